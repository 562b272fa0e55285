"""Finding hosts: candidate sources → concurrent status queries → matching.

Candidates (PROTOCOL.md section 6) come from, in this order of preference: hosts already
known (fresh status answers, the persisted peer cache), DHT providers of each required model
(or of ``llm-inference``), peers found by mDNS, discovery-protocol answers of connected
peers (hints only), then connected and bootstrap peers. Each candidate's status is asked
concurrently with a bounded fan-out and a per-host timeout; at most ``max_queries`` status
queries run per lookup, so the cost is bounded by the fan-out, not by the network size.
Hosts that fail or time out are skipped, never fatal. Answers are cached for a short TTL and
concurrent lookups are coalesced (``SingleFlight``), so a burst of ``find_host`` calls does
not multiply network queries.

Every node also answers ``/fabstir-llm/discovery/1.0.0`` from what it knows (peer exchange).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import anyio

from ..errors import (
    FabstirError,
    NoMatchingHostError,
    PeerUnreachableError,
    ProtocolNotSupportedError,
)
from ..protocols import ids
from ..protocols.discovery import discovery_handler, request_discovery
from ..protocols.rpc import RpcLimits, serve_requests
from ..protocols.status import HostStatus, request_status
from ..wire.keys import ANY_HOST_KEY, model_cid
from ..wire.messages import PeerInfo
from .matching import HostCriteria, MatchReport, match_hosts
from .peer_cache import PeerCache
from .singleflight import SingleFlight

if TYPE_CHECKING:
    from ..node import DiscoveryManager

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class FinderSettings:
    fanout: int = 16  # concurrent status queries
    max_queries: int = 32  # status queries per lookup
    status_timeout: float = 3.0  # per host: dial + status round trip
    status_ttl: float = 5.0  # how long a status answer (or failure) is reused
    not_a_host_ttl: float = 60.0  # peers that do not speak status are not asked again
    dht_timeout: float = 3.0
    dht_count: int = 20
    exchange_peers: int = 3  # peers asked for discovery hints per lookup


@dataclass(slots=True)
class LookupStats:
    """What one lookup saw: per-source candidate counts and network queries made."""

    sources: dict[str, int] = field(default_factory=dict)
    candidates: int = 0
    status_queries: int = 0
    failed: int = 0


class Discovery:
    def __init__(
        self,
        node: DiscoveryManager,
        *,
        settings: FinderSettings | None = None,
        peer_cache: PeerCache | None = None,
    ) -> None:
        self.node = node
        self.settings = settings or FinderSettings()
        # Not ``peer_cache or ...``: an empty cache (a first run) has len 0 and is falsy.
        self.peer_cache = peer_cache if peer_cache is not None else PeerCache(None)
        self.local_host: PeerInfo | None = None  # set by a HostService on this node
        self.mdns_peers: dict[str, tuple[str, ...]] = {}
        self._status: SingleFlight[HostStatus] = SingleFlight(
            self.settings.status_ttl, error_ttl=self.settings.status_ttl
        )
        self._gather: SingleFlight[dict[str, tuple[str, ...]]] = SingleFlight(
            self.settings.status_ttl
        )
        self._limiter = anyio.CapacityLimiter(self.settings.fanout)
        self._routing_table_ready: anyio.Event | None = None
        self.last_lookup = LookupStats()

    @property
    def status_queries(self) -> int:
        """Network status queries made so far (cache hits and coalesced waits excluded)."""
        return self._status.calls

    async def start(self) -> None:
        timeout = self.node.config.connection_timeout
        limits = RpcLimits(
            read_timeout=timeout, total_timeout=timeout, max_size=self.node.config.max_message_size
        )
        await self.node.add_stream_handler(
            ids.DISCOVERY,
            serve_requests(discovery_handler(self.known_hosts), limits),
            max_concurrent=limits.max_concurrent,
            max_per_peer=limits.max_per_peer,
        )

    # ------------------------------------------------------------- knowledge

    def known_hosts(self) -> list[PeerInfo]:
        """This node (if it hosts), hosts that answered recently, then the peer cache."""
        hosts: dict[str, PeerInfo] = {}
        if self.local_host is not None:
            hosts[self.local_host.peer_id] = self.local_host
        for cached in self.peer_cache.peers():
            hosts.setdefault(
                cached.peer_id,
                PeerInfo(peer_id=cached.peer_id, addrs=cached.addrs, models=cached.models),
            )
        return list(hosts.values())

    def remember(self, status: HostStatus) -> None:
        host = status.host
        self.peer_cache.remember(
            host.peer_id, tuple(_strip_p2p(a) for a in host.addrs), host.models
        )

    # --------------------------------------------------------------- sources

    async def _wait_for_routing_table(self) -> None:
        """Right after start, the DHT routing table stays empty until identify has run on the
        first connections, and a provider lookup then ends at once with nothing found (a
        one-shot ``find`` would miss every host). Wait, once per node and bounded by
        ``dht_timeout``, until the table has a peer (p2pd: "failed to find any peer in table").
        """
        if self._routing_table_ready is not None:
            await self._routing_table_ready.wait()  # concurrent lookups of other keys
            return
        self._routing_table_ready = ready = anyio.Event()
        try:
            with anyio.move_on_after(self.settings.dht_timeout):
                while True:
                    try:
                        await self.node.control.dht_closest_peers(
                            self.node.peer_id.encode(), timeout=self.settings.dht_timeout
                        )
                    except PeerUnreachableError:
                        await anyio.sleep(0.05)
                        continue
                    except FabstirError:
                        pass
                    return
        finally:
            ready.set()

    async def _dht_providers(
        self, models: Sequence[str], *, connected: bool = True
    ) -> dict[str, tuple[str, ...]]:
        if not self.node.config.enable_dht:
            return {}
        if connected:
            await self._wait_for_routing_table()
        found: dict[str, tuple[str, ...]] = {}
        keys = list(models) or [ANY_HOST_KEY]

        async def lookup(key: str) -> None:
            try:
                async for peer in self.node.control.dht_find_providers(
                    model_cid(key),
                    count=self.settings.dht_count,
                    timeout=self.settings.dht_timeout,
                ):
                    found.setdefault(peer.peer_id, peer.addrs)
            except FabstirError as exc:
                log.info("DHT provider lookup failed", extra={"key": key, "error": str(exc)})

        async with anyio.create_task_group() as tg:
            for key in keys:
                tg.start_soon(lookup, key)
        return found

    async def _exchange_hints(
        self, models: Sequence[str], asked: Sequence[str]
    ) -> dict[str, tuple[str, ...]]:
        hints: dict[str, tuple[str, ...]] = {}

        async def ask(peer_id: str) -> None:
            with anyio.move_on_after(self.settings.status_timeout):
                try:
                    answer = await request_discovery(
                        self.node.control,
                        peer_id,
                        models=models or None,
                        timeout=self.settings.status_timeout,
                    )
                except FabstirError:
                    return
                for info in answer:
                    hints.setdefault(info.peer_id, tuple(_strip_p2p(a) for a in info.addrs))

        async with anyio.create_task_group() as tg:
            for peer_id in asked[: self.settings.exchange_peers]:
                tg.start_soon(ask, peer_id)
        return hints

    async def gather_candidates(self, models: Sequence[str]) -> dict[str, tuple[str, ...]]:
        """peer id → addresses (possibly empty: the daemon knows them), coalesced + cached."""
        key = ("candidates", tuple(sorted(models)))
        return await self._gather.get(key, lambda: self._gather_now(models))

    async def _gather_now(self, models: Sequence[str]) -> dict[str, tuple[str, ...]]:
        stats = LookupStats()
        me = self.node.peer_id
        connected = [p.peer_id for p in await self.node.control.list_peers()]
        bootstrap = [r.peer_id for r in self.node.bootstrap_results]
        ordered: list[tuple[str, dict[str, tuple[str, ...]]]] = [
            ("known", {p.peer_id: p.addrs for p in self.known_hosts()}),
        ]
        dht, hints = await _both(
            self._dht_providers(models, connected=bool(connected)),
            self._exchange_hints(models, list(dict.fromkeys(bootstrap + connected))),
        )
        ordered += [
            ("dht", dht),
            ("mdns", dict(self.mdns_peers)),
            ("exchange", hints),
            ("connected", dict.fromkeys(connected, ())),
            ("bootstrap", dict.fromkeys(bootstrap, ())),
        ]
        merged: dict[str, tuple[str, ...]] = {}
        for name, found in ordered:
            stats.sources[name] = len(found)
            for peer_id, addrs in found.items():
                if peer_id == me:
                    continue
                if peer_id not in merged or (addrs and not merged[peer_id]):
                    merged[peer_id] = addrs
        stats.candidates = len(merged)
        self.last_lookup = stats
        return merged

    # ---------------------------------------------------------------- status

    async def status_of(self, peer_id: str, addrs: Sequence[str] = ()) -> HostStatus:
        """A host's status, from cache when fresh, else one (coalesced) network query."""
        return await self._status.get(peer_id, lambda: self._query_status(peer_id, addrs))

    async def _query_status(self, peer_id: str, addrs: Sequence[str]) -> HostStatus:
        timeout = self.settings.status_timeout
        async with self._limiter:
            if addrs:
                # A failed dial is not fatal: the daemon may know other addresses.
                with contextlib.suppress(FabstirError):
                    await self.node.control.connect(peer_id, addrs, timeout=timeout)
            status = await request_status(self.node.control, peer_id, timeout=timeout)
        self.remember(status)
        return status

    # ---------------------------------------------------------------- lookup

    async def find_hosts(self, criteria: HostCriteria | None = None) -> list[HostStatus]:
        """All matching hosts, best first. ``NoMatchingHostError`` when none matched."""
        report = await self.match(criteria or HostCriteria())
        if not report.ranked:
            raise NoMatchingHostError(self.last_lookup.candidates, report.answered, report.excluded)
        return report.ranked

    async def find_host(self, criteria: HostCriteria | None = None) -> HostStatus:
        return (await self.find_hosts(criteria))[0]

    async def match(self, criteria: HostCriteria) -> MatchReport:
        candidates = await self.gather_candidates(criteria.required_models)
        chosen = list(candidates.items())[: self.settings.max_queries]
        answers: list[HostStatus] = []
        failed = 0
        before = self._status.calls

        async def ask(peer_id: str, addrs: tuple[str, ...]) -> None:
            nonlocal failed
            try:
                answers.append(await self.status_of(peer_id, addrs))
            except ProtocolNotSupportedError:
                failed += 1  # not a host (e.g. a bootstrap node): remembered by the cache
            except FabstirError as exc:
                failed += 1
                log.debug("candidate skipped", extra={"peer": peer_id, "error": str(exc)})

        async with anyio.create_task_group() as tg:
            for peer_id, addrs in chosen:
                tg.start_soon(ask, peer_id, addrs)
        self.last_lookup.status_queries = self._status.calls - before
        self.last_lookup.failed = failed
        self.peer_cache.save()
        return match_hosts(criteria, answers)


Found = dict[str, tuple[str, ...]]


async def _both(first: Awaitable[Found], second: Awaitable[Found]) -> tuple[Found, Found]:
    """Run two source coroutines concurrently."""
    results: list[Found] = [{}, {}]

    async def run(i: int, coro: Awaitable[Found]) -> None:
        results[i] = await coro

    async with anyio.create_task_group() as tg:
        tg.start_soon(run, 0, first)
        tg.start_soon(run, 1, second)
    return results[0], results[1]


def _strip_p2p(addr: str) -> str:
    """``/ip4/.../tcp/N/p2p/<id>`` → ``/ip4/.../tcp/N`` (the daemon wants bare addresses)."""
    head, sep, _ = addr.rpartition("/p2p/")
    return head if sep and head else addr
