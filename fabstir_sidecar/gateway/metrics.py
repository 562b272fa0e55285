"""``GET /metrics`` (HTTP_API.md section 5): a prometheus_client collector that reads the
counters where the events happen (client, discovery, node, host, gateway) at scrape time."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
    SummaryMetricFamily,
)
from prometheus_client.registry import Collector

from fabstir_sidecar._version import __version__
from fabstir_sidecar.client import JOB_DURATION_BUCKETS, FabstirClient
from fabstir_sidecar.gateway.stats import GatewayStats
from fabstir_sidecar.host.service import HostService
from fabstir_sidecar.node.manager import DiscoveryManager


class NodeCollector(Collector):
    def __init__(
        self,
        node: DiscoveryManager,
        client: FabstirClient,
        stats: GatewayStats,
        host: HostService | None,
    ) -> None:
        self.node = node
        self.client = client
        self.stats = stats
        self.host = host
        self.connected_peers = 0  # refreshed by the route before each scrape (async)

    def collect(self) -> Iterator[Metric]:
        yield from self._client()
        yield from self._gateway()
        yield from self._node()
        if self.host is not None:
            yield from self._host(self.host)

    def _client(self) -> Iterator[Metric]:
        cs = self.client.stats
        jobs = CounterMetricFamily(
            "fabstir_client_jobs", "Jobs this node sent, by outcome", labels=["outcome"]
        )
        for outcome, n in sorted(cs.jobs.items()):
            jobs.add_metric([outcome], n)
        yield jobs
        buckets: list[tuple[str, float]] = []
        running = 0
        for bound, n in zip(JOB_DURATION_BUCKETS, cs.duration_counts, strict=False):
            running += n
            buckets.append((repr(float(bound)), running))
        buckets.append(("+Inf", sum(cs.duration_counts)))
        yield HistogramMetricFamily(
            "fabstir_client_job_duration_seconds",
            "Duration of jobs this node sent",
            buckets=buckets,
            sum_value=cs.duration_sum,
        )
        yield CounterMetricFamily(
            "fabstir_tokens_streamed", "Token frames received from hosts", value=cs.tokens_streamed
        )

    def _gateway(self) -> Iterator[Metric]:
        requests = CounterMetricFamily(
            "fabstir_gateway_requests", "HTTP requests answered", labels=["route", "status"]
        )
        for (route, status), n in sorted(self.stats.requests.items()):
            requests.add_metric([route, status], n)
        yield requests
        yield CounterMetricFamily(
            "fabstir_gateway_failovers",
            "Jobs moved to the next-ranked host",
            value=self.stats.failovers,
        )

    def _node(self) -> Iterator[Metric]:
        node, discovery = self.node, self.node.discovery
        lookups = CounterMetricFamily(
            "fabstir_host_lookups", "Host lookups, by outcome", labels=["outcome"]
        )
        for outcome, n in sorted(discovery.lookups.items()):
            lookups.add_metric([outcome], n)
        yield lookups
        yield SummaryMetricFamily(
            "fabstir_host_lookup_duration_seconds",
            "Time spent finding hosts",
            count_value=sum(discovery.lookups.values()),
            sum_value=discovery.lookup_seconds,
        )
        yield GaugeMetricFamily(
            "fabstir_connected_peers", "Peers connected now", value=self.connected_peers
        )
        yield CounterMetricFamily("fabstir_daemon_restarts", "p2pd restarts", value=node.restarts)
        messages = node.message_stats
        yield CounterMetricFamily(
            "fabstir_sdk_messages_received", "SDK messages received", value=messages["received"]
        )
        yield CounterMetricFamily(
            "fabstir_sdk_messages_refused",
            "SDK messages refused (too large, malformed, stalled)",
            value=messages["refused"],
        )
        yield CounterMetricFamily(
            "fabstir_sdk_messages_dropped",
            "SDK messages a slow SSE subscriber lost",
            value=self.stats.messages_dropped,
        )
        info = GaugeMetricFamily("fabstir_build_info", "Version", labels=["version"])
        info.add_metric([__version__], 1)
        yield info

    @staticmethod
    def _host(host: HostService) -> Iterator[Metric]:
        jobs = CounterMetricFamily(
            "fabstir_host_jobs", "Jobs this host answered, by outcome", labels=["outcome"]
        )
        jobs.add_metric(["result"], host.stats.results)
        jobs.add_metric(["rejected"], host.stats.rejected)
        jobs.add_metric(["error"], host.stats.errors)
        yield jobs
        yield GaugeMetricFamily(
            "fabstir_host_active_jobs", "Jobs running now", value=host.active_jobs
        )
        admission = CounterMetricFamily(
            "fabstir_host_admission",
            "Admission decisions, by protocol",
            labels=["protocol", "decision"],
        )
        for (protocol, decision), n in sorted(host.stats.admissions.items()):
            admission.add_metric([protocol, decision], n)
        yield admission
