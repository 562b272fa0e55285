"""Finding hosts: candidate sources → concurrent status queries → matching.

Candidates (docs/discovery.md) come from, in this order of preference: hosts already
known (fresh status answers, the persisted peer cache), DHT providers of each required model
(or of ``llm-inference``), peers found by mDNS, discovery-protocol answers of connected
peers (hints only), then connected and bootstrap peers. Each candidate's status is asked
concurrently with a bounded fan-out and a per-host timeout; at most ``max_queries`` status
queries run per lookup, so the cost is bounded by the fan-out, not by the network size.
Hosts that fail or time out are skipped, never fatal. Answers are cached for a short TTL and
concurrent lookups are coalesced (``SingleFlight``), so a burst of ``find_host`` calls does
not multiply network queries.

Peers that do not speak status (a bootstrap node, a plain client) are remembered as "not a
host" for ``not_a_host_ttl`` and skipped by lookups meanwhile.

Every node also answers ``/fabstir-llm/discovery/1.0.0`` from what it knows (peer exchange).
Before answering, it asks the connected peers it knows nothing about for their status, in the
background and bounded (``exchange_probes`` peers, at most ``exchange_wait`` of waiting), so a
bootstrap node learns the hosts connected to it and can hand them out as hints.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence

import anyio

from fabstir_sidecar.core.circuit import dial_order
from fabstir_sidecar.core.errors import (
    FabstirError,
    FabstirTimeoutError,
    MalformedMessageError,
    NoMatchingHostError,
    ProtocolNotSupportedError,
)
from fabstir_sidecar.core.multiaddr import strip_peer
from fabstir_sidecar.discovery.config import FinderConfig, LookupStats
from fabstir_sidecar.discovery.matching import HostCriteria, MatchReport, match_hosts
from fabstir_sidecar.discovery.peer_cache import PeerCache
from fabstir_sidecar.discovery.singleflight import SingleFlight
from fabstir_sidecar.discovery.sources import (
    Found,
    both,
    dht_providers,
    exchange_hints,
    exchange_order,
    wait_for_routing_table,
)
from fabstir_sidecar.discovery.verdicts import NotAHostMemory
from fabstir_sidecar.node_interface import NodeInterface
from fabstir_sidecar.protocols import ids
from fabstir_sidecar.protocols.discovery import discovery_handler
from fabstir_sidecar.protocols.status import HostStatus, request_status
from fabstir_sidecar.rpc.exchange import Exchange
from fabstir_sidecar.rpc.limits import RpcLimits
from fabstir_sidecar.wire.messages import DiscoveryRequest, PeerInfo

log = logging.getLogger(__name__)

# A status answer of these kinds means "this peer is no host" (it does not speak the status
# protocol, or its record is unusable), not "try again soon" like a timeout or a lost dial.
NOT_A_HOST_ERRORS: tuple[type[FabstirError], ...] = (
    ProtocolNotSupportedError,
    MalformedMessageError,
)
LEARN_GAP = 1.0  # seconds between two rounds of asking connected peers (peer exchange)


MdnsSource = Callable[[], Mapping[str, tuple[str, ...]]]
"""Peers mDNS hears right now (peer id -> bare addresses); supplied by the node."""


class Discovery:
    """Host lookups for one node, and its answers to peer exchange (see the module doc)."""

    def __init__(
        self,
        node: NodeInterface,
        *,
        settings: FinderConfig | None = None,
        peer_cache: PeerCache | None = None,
        mdns: MdnsSource | None = None,
    ) -> None:
        self.node = node
        self.settings = settings or FinderConfig()
        self._mdns = mdns
        # Not ``peer_cache or ...``: an empty cache (a first run) has len 0 and is falsy.
        self.peer_cache = peer_cache if peer_cache is not None else PeerCache(None)
        self.local_host: PeerInfo | None = None  # this node, when it hosts (set_local_host)
        self._status: SingleFlight[HostStatus] = SingleFlight(
            self.settings.status_ttl, error_ttl=self.settings.status_ttl
        )
        self._gather: SingleFlight[dict[str, tuple[str, ...]]] = SingleFlight(
            self.settings.candidates_ttl
        )
        self._limiter = anyio.CapacityLimiter(self.settings.fanout)
        self._routing_table_ready: anyio.Event | None = None
        self._linked: frozenset[str] = frozenset()  # peers connected at the last gather
        self._not_a_host = NotAHostMemory(self.settings.not_a_host_ttl)
        self._learning: anyio.Event | None = None  # set when the current round is over
        self._learning_started = -LEARN_GAP
        self._connected: list[str] = []  # LIST_PEERS of the last round
        self.last_lookup = LookupStats()
        self.lookups: dict[str, int] = {}  # outcome (match, no_match, error) -> count
        self.lookup_seconds = 0.0  # total time spent in lookups

    @property
    def status_queries(self) -> int:
        """Network status queries made so far (cache hits and coalesced waits excluded)."""
        return self._status.calls

    async def start(self) -> None:
        timeout = self.node.config.connection_timeout
        limits = RpcLimits(
            read_timeout=timeout, total_timeout=timeout, max_size=self.node.config.max_message_size
        )
        await self.node.serve(ids.DISCOVERY, self._answer_discovery, limits)

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

    def set_local_host(self, host: PeerInfo | None) -> None:
        """This node hosts (listed first in peer-exchange answers), or no longer does."""
        self.local_host = host

    def remember(self, status: HostStatus) -> None:
        host = status.host
        self._not_a_host.forget(host.peer_id)
        self.peer_cache.remember(
            host.peer_id, tuple(strip_peer(a) for a in host.addrs), host.models
        )

    def not_a_host(self, peer_id: str) -> bool:
        """Whether ``peer_id`` answered status as a non-host within ``not_a_host_ttl``."""
        return self._not_a_host.error_of(peer_id) is not None

    def _remember_not_a_host(self, peer_id: str, error: FabstirError) -> None:
        self._not_a_host.remember(peer_id, error)
        self.peer_cache.forget(peer_id)  # a cached host that stopped hosting is no hint

    # ---------------------------------------------------- answering exchange

    async def _answer_discovery(self, exchange: Exchange) -> None:
        """``/fabstir-llm/discovery/1.0.0`` (docs/protocol.md §6.3): the hosts this node knows.

        A node learns hosts from its own lookups; a bootstrap node makes none. So first ask the
        connected peers we know nothing about for their status (bounded, in the background),
        and wait for their answers at most ``exchange_wait``: the answer is never held longer,
        and late answers serve the next request. Hosts connected right now come first.
        """
        DiscoveryRequest.from_json(exchange.request)  # a bad request is refused at once
        await self.learn_connected_hosts()
        first = {*self._connected, self.node.peer_id}  # this node, then connected hosts

        def hosts() -> list[PeerInfo]:
            return sorted(self.known_hosts(), key=lambda p: p.peer_id not in first)

        await discovery_handler(hosts)(exchange)

    async def learn_connected_hosts(self) -> None:
        """Ask the connected peers that are neither known hosts nor known non-hosts (each
        verdict holds ``not_a_host_ttl``) for their status: at most ``exchange_probes`` per
        round, a round at most every ``LEARN_GAP`` s. Hosts that answer go into the peer
        cache. Waits at most ``exchange_wait``; the round goes on in the node's task group."""
        done = self._learning
        now = anyio.current_time()
        if done is None or (done.is_set() and now - self._learning_started >= LEARN_GAP):
            self._learning = done = anyio.Event()
            self._learning_started = now
            try:
                self.node.spawn(self._learn_round, done)
            except FabstirError:  # the node is stopping
                done.set()
        with anyio.move_on_after(self.settings.exchange_wait):
            await done.wait()

    async def _learn_round(self, done: anyio.Event) -> None:
        try:
            me = self.node.peer_id
            self._connected = [p.peer_id for p in await self.node.control.list_peers()]
            # A verdict on a peer holds for not_a_host_ttl, host or not: cached hosts are
            # asked again once their entry is older (their models may have changed).
            stale_before = time.time() - self.settings.not_a_host_ttl
            fresh = {c.peer_id for c in self.peer_cache.peers() if c.last_seen > stale_before}
            unknown = [
                p
                for p in dict.fromkeys(self._connected)
                if p != me and p not in fresh and not self.not_a_host(p)
            ][: self.settings.exchange_probes]

            async def probe(peer_id: str) -> None:
                with contextlib.suppress(FabstirError):
                    await self.status_of(peer_id)

            async with anyio.create_task_group() as tg:
                for peer_id in unknown:
                    tg.start_soon(probe, peer_id)
            if unknown:
                self.peer_cache.save()
        except FabstirError as exc:
            log.debug("could not ask connected peers", extra={"error": str(exc)})
        finally:
            done.set()

    # --------------------------------------------------------------- sources

    def mdns_candidates(self) -> dict[str, tuple[str, ...]]:
        """Peers mDNS hears right now (none when mDNS is off)."""
        return dict(self._mdns()) if self._mdns is not None else {}

    async def wait_for_routing_table(self, timeout: float) -> bool:
        """Wait at most ``timeout`` until the DHT routing table has a peer (see
        :func:`~fabstir_sidecar.discovery.sources.wait_for_routing_table`)."""
        return await wait_for_routing_table(self.node.control, self.node.peer_id.encode(), timeout)

    async def _wait_for_routing_table(self) -> None:
        """Right after start, the DHT routing table stays empty until identify has run on the
        first connections, and a provider lookup then ends at once with nothing found (a
        one-shot ``find`` would miss every host). Wait, once per node and bounded by
        ``dht_timeout``, until the table has a peer.
        """
        if self._routing_table_ready is not None:
            await self._routing_table_ready.wait()  # concurrent lookups of other keys
            return
        self._routing_table_ready = ready = anyio.Event()
        try:
            await self.wait_for_routing_table(self.settings.dht_timeout)
        finally:
            ready.set()

    async def _dht_providers(self, models: Sequence[str], *, connected: bool = True) -> Found:
        if not self.node.config.enable_dht:
            return {}
        if connected:
            await self._wait_for_routing_table()
        return await dht_providers(self.node.control, models, self.settings)

    async def gather_candidates(self, models: Sequence[str]) -> dict[str, tuple[str, ...]]:
        """peer id → addresses (possibly empty: the daemon knows them), coalesced + cached."""
        key = ("candidates", tuple(sorted(models)))
        return await self._gather.get(key, lambda: self._gather_now(models))

    async def _gather_now(self, models: Sequence[str]) -> Found:
        stats = LookupStats()
        me = self.node.peer_id
        connected = [p.peer_id for p in await self.node.control.list_peers()]
        self._linked = frozenset(connected)
        bootstrap = list(self.node.bootstrap_peers)
        ordered: list[tuple[str, dict[str, tuple[str, ...]]]] = [
            ("known", {p.peer_id: p.addrs for p in self.known_hosts()}),
        ]
        dht, hints = await both(
            self._dht_providers(models, connected=bool(connected)),
            exchange_hints(
                self.node.control, models, exchange_order(bootstrap, connected), self.settings
            ),
        )
        ordered += [
            ("dht", dht),
            ("mdns", self.mdns_candidates()),
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
        """A host's status, from cache when fresh, else one (coalesced) network query.

        A peer that answered as a non-host (see ``NOT_A_HOST_ERRORS``) within
        ``not_a_host_ttl`` is not asked: its error is raised again at once.
        """
        known = self._not_a_host.error_of(peer_id)
        if known is not None:
            raise known.with_traceback(None)
        return await self._status.get(peer_id, lambda: self._query_status(peer_id, addrs))

    async def _query_status(self, peer_id: str, addrs: Sequence[str]) -> HostStatus:
        timeout = self.settings.status_timeout
        async with self._limiter:
            # One deadline for the dial and the status round trip, from when our turn came.
            deadline = anyio.current_time() + timeout
            try:
                if addrs and peer_id not in self._linked:
                    # A failed dial is not fatal (the daemon may know other addresses); a peer
                    # linked at the last gather is not redialed. Circuits via relays go last.
                    dial = dial_order(addrs, self.node.config.relay_addrs, peer_id)
                    with contextlib.suppress(FabstirError):
                        await self.node.control.connect(peer_id, dial, timeout=timeout)
                remaining = deadline - anyio.current_time()
                if remaining <= 0:
                    raise _status_timeout(peer_id, timeout)
                try:
                    status = await request_status(self.node.control, peer_id, timeout=remaining)
                except TimeoutError:  # FabstirTimeoutError: say which deadline it was
                    raise _status_timeout(peer_id, timeout) from None
            except NOT_A_HOST_ERRORS as exc:
                self._remember_not_a_host(peer_id, exc)
                raise
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
        """Ask the candidates' status and match them (counted in ``lookups``)."""
        started = time.perf_counter()
        outcome = "error"
        try:
            report = await self._match(criteria)
            outcome = "match" if report.ranked else "no_match"
            return report
        finally:
            self.lookups[outcome] = self.lookups.get(outcome, 0) + 1
            self.lookup_seconds += time.perf_counter() - started

    async def _match(self, criteria: HostCriteria) -> MatchReport:
        answers: list[HostStatus] = []
        failed = 0
        before = self._status.calls
        asked: set[str] = {self.node.peer_id}

        async def ask(peer_id: str, addrs: tuple[str, ...]) -> None:
            nonlocal failed
            try:
                answers.append(await self.status_of(peer_id, addrs))
            except NOT_A_HOST_ERRORS:
                failed += 1  # not a host (e.g. a bootstrap node): skipped for not_a_host_ttl
            except FabstirError as exc:
                failed += 1
                log.debug("candidate skipped", extra={"peer": peer_id, "error": str(exc)})

        def ask_all(found: Iterable[tuple[str, tuple[str, ...]]], budget: int) -> None:
            # Known non-hosts do not use up the query budget.
            for peer_id, addrs in found:
                if len(asked) > budget:
                    return
                if peer_id not in asked and not self.not_a_host(peer_id):
                    asked.add(peer_id)
                    tg.start_soon(ask, peer_id, addrs)

        budget = self.settings.max_queries
        async with anyio.create_task_group() as tg:
            # Hosts we already know are asked while the DHT and peer exchange are still
            # looking (a warm lookup costs max(gather, status), not their sum), but they
            # leave ``fresh_share`` queries to candidates the cache does not hold, so a full
            # peer cache never hides new hosts.
            known = [(p.peer_id, p.addrs) for p in self.known_hosts()]
            ask_all(known, budget - min(self.settings.fresh_share, budget))
            candidates = await self.gather_candidates(criteria.required_models)
            skipped = sum(1 for p in candidates if p not in asked and self.not_a_host(p))
            cached = {peer_id for peer_id, _ in known}
            ask_all(((p, a) for p, a in candidates.items() if p not in cached), budget)
            ask_all(candidates.items(), budget)
        self.last_lookup.status_queries = self._status.calls - before
        self.last_lookup.failed = failed
        self.last_lookup.skipped = skipped
        self.peer_cache.save()
        return match_hosts(criteria, answers)


def _status_timeout(peer_id: str, timeout: float) -> FabstirTimeoutError:
    return FabstirTimeoutError(f"{peer_id}: no status (dial included) within {timeout:.1f}s")
