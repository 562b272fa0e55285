"""``Discovery`` logic without a daemon: a fake node and control, fake status/exchange calls.

Covers the not-a-host memory (``not_a_host_ttl``), one deadline for dial + status, the order
of peers asked for exchange hints, mDNS candidates that left, and the discovery responder
learning its connected hosts (bounded in time and in number). The same behaviour on real
daemons is in ``tests/integration/test_discovery.py``.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import anyio
import anyio.abc
import pytest

from fabstir_sidecar.core.errors import (
    FabstirTimeoutError,
    MalformedMessageError,
    PeerUnreachableError,
    ProtocolNotSupportedError,
)
from fabstir_sidecar.discovery import service as service_mod
from fabstir_sidecar.discovery import sources as sources_mod
from fabstir_sidecar.discovery.config import FinderConfig
from fabstir_sidecar.discovery.matching import HostCriteria
from fabstir_sidecar.discovery.service import Discovery
from fabstir_sidecar.discovery.sources import exchange_order
from fabstir_sidecar.protocols.status import HostStatus
from fabstir_sidecar.wire.messages import BadRequestError, Host, PeerInfo
from tests.netns.dnswire import fake_peer_id

pytestmark = pytest.mark.anyio

ME = fake_peer_id()


@dataclasses.dataclass
class Listed:
    peer_id: str
    addrs: tuple[str, ...] = ()


class FakeControl:
    def __init__(self) -> None:
        self.connected: list[str] = []
        self.connect_delay = 0.0
        self.dials: list[tuple[str, float]] = []
        self.list_calls = 0

    async def list_peers(self) -> list[Listed]:
        self.list_calls += 1
        return [Listed(p) for p in self.connected]

    async def connect(self, peer_id: str, addrs: Sequence[str], *, timeout: float) -> None:
        self.dials.append((peer_id, timeout))
        if self.connect_delay > timeout:
            await anyio.sleep(timeout)
            raise FabstirTimeoutError(f"dial took over {timeout}s")
        await anyio.sleep(self.connect_delay)


@dataclasses.dataclass
class FakeConfig:
    enable_dht: bool = False
    connection_timeout: float = 5.0
    max_message_size: int = 1 << 20
    relay_addrs: tuple[str, ...] = ()  # core/circuit.py: relays to dial through


class FakeNode:
    """The parts of ``NodeInterface`` that Discovery uses."""

    def __init__(self) -> None:
        self.peer_id = ME
        self.control = FakeControl()
        self.config = FakeConfig()
        self.bootstrap_peers: tuple[str, ...] = ()
        self.served: list[str] = []
        self._tg: anyio.abc.TaskGroup | None = None

    async def serve(self, protocol: str, handler: Any, limits: Any) -> None:
        self.served.append(protocol)

    def spawn(self, work: Any, *args: Any) -> None:
        assert self._tg is not None
        self._tg.start_soon(work, *args)


def host(peer_id: str, *models: str) -> HostStatus:
    record = Host(
        peer_id=peer_id,
        addrs=(f"/ip4/10.0.0.1/tcp/4001/p2p/{peer_id}",),
        models=models or ("m",),
        reputation=1,
        uptime_s=1,
        active_jobs=0,
        max_jobs=1,
        version="t",
    )
    return HostStatus(host=record, latency_ms=1.0)


class Network:
    """What ``request_status`` / ``request_discovery`` answer, and who was asked."""

    def __init__(self) -> None:
        self.hosts: dict[str, HostStatus] = {}
        self.non_hosts: set[str] = set()
        self.slow: dict[str, float] = {}  # peer -> seconds before it answers
        self.failing: set[str] = set()  # transient failure
        self.status_asked: list[tuple[str, float]] = []
        self.exchange_asked: list[str] = []
        self.exchange_answer: list[PeerInfo] = []

    async def request_status(self, control: Any, peer_id: str, *, timeout: float) -> HostStatus:
        self.status_asked.append((peer_id, timeout))
        delay = self.slow.get(peer_id, 0.0)
        if delay > timeout:
            await anyio.sleep(timeout)
            raise FabstirTimeoutError(f"no response within {timeout:.1f}s")
        await anyio.sleep(delay)
        if peer_id in self.non_hosts:
            raise ProtocolNotSupportedError("protocol not supported", peer_id=peer_id)
        if peer_id in self.failing:
            raise PeerUnreachableError("unreachable", peer_id=peer_id)
        return self.hosts[peer_id]

    async def request_discovery(
        self, control: Any, peer_id: str, *, models: Any, timeout: float
    ) -> list[PeerInfo]:
        self.exchange_asked.append(peer_id)
        return list(self.exchange_answer)

    def asked(self, peer_id: str) -> int:
        return sum(1 for p, _ in self.status_asked if p == peer_id)


@pytest.fixture
def net(monkeypatch: pytest.MonkeyPatch) -> Network:
    network = Network()
    monkeypatch.setattr(service_mod, "request_status", network.request_status)
    monkeypatch.setattr(sources_mod, "request_discovery", network.request_discovery)
    return network


@asynccontextmanager
async def discovery(mdns: Any = None, **settings: Any) -> AsyncIterator[tuple[Discovery, FakeNode]]:
    node = FakeNode()
    found = Discovery(node, settings=FinderConfig(**settings), mdns=mdns)  # type: ignore[arg-type]
    async with anyio.create_task_group() as tg:
        node._tg = tg
        yield found, node
        tg.cancel_scope.cancel()


# ------------------------------------------------------------------ not a host


async def test_a_non_host_is_not_asked_again_within_not_a_host_ttl(net: Network) -> None:
    boot = fake_peer_id()
    net.non_hosts.add(boot)
    async with discovery(status_ttl=0.05, not_a_host_ttl=0.4) as (found, _):
        found.peer_cache.remember(boot, ("/ip4/10.0.0.9/tcp/1",))  # it once was a host
        with pytest.raises(ProtocolNotSupportedError):
            await found.status_of(boot)
        assert found.not_a_host(boot)
        assert boot not in found.peer_cache  # no longer handed out as a hint
        await anyio.sleep(0.1)  # status_ttl is over, not_a_host_ttl is not
        for _ in range(3):
            with pytest.raises(ProtocolNotSupportedError):
                await found.status_of(boot)
        assert net.asked(boot) == 1
        assert found.status_queries == 1

        await anyio.sleep(0.35)  # not_a_host_ttl is over: asked again
        net.non_hosts.discard(boot)
        net.hosts[boot] = host(boot)
        assert (await found.status_of(boot)).host.peer_id == boot
        assert net.asked(boot) == 2
        assert not found.not_a_host(boot)


async def test_a_record_for_another_peer_counts_as_not_a_host(
    net: Network, monkeypatch: pytest.MonkeyPatch
) -> None:
    liar = fake_peer_id()

    async def lying(control: Any, peer_id: str, *, timeout: float) -> HostStatus:
        net.status_asked.append((peer_id, timeout))
        raise MalformedMessageError("describes another peer")

    monkeypatch.setattr(service_mod, "request_status", lying)
    async with discovery(status_ttl=0.01) as (found, _):
        with pytest.raises(MalformedMessageError):
            await found.status_of(liar)
        await anyio.sleep(0.05)
        with pytest.raises(MalformedMessageError):
            await found.status_of(liar)
        assert net.asked(liar) == 1


async def test_a_transient_failure_is_retried_after_status_ttl(net: Network) -> None:
    flaky = fake_peer_id()
    net.failing.add(flaky)
    async with discovery(status_ttl=0.05) as (found, _):
        with pytest.raises(PeerUnreachableError):
            await found.status_of(flaky)
        assert not found.not_a_host(flaky)  # a timeout or a lost dial proves nothing
        await anyio.sleep(0.1)
        with pytest.raises(PeerUnreachableError):
            await found.status_of(flaky)
        assert net.asked(flaky) == 2


async def test_lookups_skip_known_non_hosts_without_spending_the_budget(net: Network) -> None:
    boot, h1, h2 = fake_peer_id(), fake_peer_id(), fake_peer_id()
    net.non_hosts.add(boot)
    net.hosts.update({h1: host(h1), h2: host(h2)})
    async with discovery(status_ttl=0.05, max_queries=2) as (found, node):
        node.control.connected = [boot, h1, h2]
        node.bootstrap_peers = (boot,)
        first = await found.match(HostCriteria())
        stats = found.last_lookup
        assert [s.host.peer_id for s in first.ranked] == [h1]  # the budget: boot and h1
        assert (stats.candidates, stats.status_queries, stats.failed, stats.skipped) == (3, 2, 1, 0)

        await anyio.sleep(0.1)  # candidate list and status answers expired
        second = await found.match(HostCriteria())
        stats = found.last_lookup
        assert {s.host.peer_id for s in second.ranked} == {h1, h2}
        assert (stats.candidates, stats.status_queries, stats.failed, stats.skipped) == (3, 2, 0, 1)
        assert net.asked(boot) == 1


# --------------------------------------------------------------- one deadline


async def test_dial_and_status_share_one_deadline(net: Network) -> None:
    peer = fake_peer_id()
    net.hosts[peer] = host(peer)
    net.slow[peer] = 10.0
    async with discovery(status_timeout=0.5) as (found, node):
        node.control.connect_delay = 0.3
        started = anyio.current_time()
        with pytest.raises(FabstirTimeoutError) as caught:
            await found.status_of(peer, ("/ip4/10.0.0.1/tcp/4001",))
        elapsed = anyio.current_time() - started
    assert elapsed < 0.65, elapsed  # not 0.3 + 0.5
    [(_, dial_timeout)] = node.control.dials
    [(_, status_timeout)] = net.status_asked
    assert dial_timeout == pytest.approx(0.5)
    assert status_timeout <= 0.21  # what the dial left of the 0.5 s
    assert "0.5s" in str(caught.value)


async def test_a_dial_that_uses_the_whole_deadline_leaves_no_status_query(net: Network) -> None:
    peer = fake_peer_id()
    net.hosts[peer] = host(peer)
    async with discovery(status_timeout=0.2) as (found, node):
        node.control.connect_delay = 5.0
        started = anyio.current_time()
        with pytest.raises(FabstirTimeoutError):
            await found.status_of(peer, ("/ip4/10.0.0.1/tcp/4001",))
        assert anyio.current_time() - started < 0.35
    assert net.status_asked == [] or net.status_asked[0][1] < 0.05


async def test_a_fast_dial_leaves_the_rest_for_status(net: Network) -> None:
    peer = fake_peer_id()
    net.hosts[peer] = host(peer)
    async with discovery(status_timeout=1.0) as (found, _):
        assert (await found.status_of(peer, ("/ip4/10.0.0.1/tcp/4001",))).host.peer_id == peer
    [(_, status_timeout)] = net.status_asked
    assert 0.9 < status_timeout <= 1.0


# ------------------------------------------------------------- exchange order


def test_exchange_order_prefers_connected_peers() -> None:
    assert exchange_order(["dead", "live"], ["x", "live", "y"]) == ["live", "x", "y", "dead"]
    assert exchange_order([], ["a", "b"]) == ["a", "b"]
    assert exchange_order(["b1", "b2"], []) == ["b1", "b2"]  # nothing else: still try them
    assert exchange_order(["a"], ["a", "a"]) == ["a"]


async def test_exchange_slots_go_to_connected_peers_first(net: Network) -> None:
    dead, live, c1, c2 = (fake_peer_id() for _ in range(4))
    async with discovery(exchange_peers=3) as (found, node):
        node.bootstrap_peers = (dead, live)
        node.control.connected = [c1, live, c2]
        await found.gather_candidates([])
    assert sorted(net.exchange_asked) == sorted([live, c1, c2])
    assert dead not in net.exchange_asked


# ----------------------------------------------------------- the query budget


async def test_a_full_peer_cache_leaves_queries_for_new_hosts(net: Network) -> None:
    """With more cached hosts than ``max_queries``, hosts only the exchange (or DHT) knows
    still get ``fresh_share`` of the queries: a big cache never hides new hosts."""
    cached = [fake_peer_id() for _ in range(40)]
    new = [fake_peer_id() for _ in range(3)]
    helper = fake_peer_id()
    for peer in cached + new:
        net.hosts[peer] = host(peer)
    net.exchange_answer = [PeerInfo(peer_id=p, addrs=(), models=("m",)) for p in new]
    async with discovery(max_queries=16, fresh_share=4) as (found, node):
        node.control.connected = [helper]
        net.non_hosts.add(helper)
        for peer in cached:
            found.peer_cache.remember(peer, (f"/ip4/10.0.0.1/tcp/1/p2p/{peer}",))
        ranked = await found.find_hosts()
        asked = {p for p, _ in net.status_asked}
    assert set(new) <= asked  # every new host was asked
    assert len(asked) == 16  # and the budget held
    assert {r.host.peer_id for r in ranked} >= set(new)


async def test_candidate_lists_are_reused_for_candidates_ttl(net: Network) -> None:
    peer = fake_peer_id()
    net.hosts[peer] = host(peer)
    net.exchange_answer = [PeerInfo(peer_id=peer, addrs=(), models=("m",))]
    helper = fake_peer_id()
    net.non_hosts.add(helper)
    async with discovery(status_ttl=0.0, candidates_ttl=60.0) as (found, node):
        node.control.connected = [helper]
        await found.find_hosts()
        await found.find_hosts()
    assert len(net.exchange_asked) == 1  # the list was gathered once
    assert net.asked(peer) == 2  # its status was asked each time


# ------------------------------------------------------------------------ mDNS


async def test_mdns_candidates_are_what_the_mdns_source_hears_now(net: Network) -> None:
    stays, leaves = fake_peer_id(), fake_peer_id()
    heard = {stays: ("/ip4/10.0.0.2/tcp/1",), leaves: ("/ip4/10.0.0.3/tcp/1",)}
    async with discovery(mdns=lambda: dict(heard), candidates_ttl=0.0) as (found, _):
        assert set(await found.gather_candidates([])) == {stays, leaves}
        del heard[leaves]  # it said goodbye, or its records expired
        candidates = await found.gather_candidates([])
        assert stays in candidates and leaves not in candidates
        assert found.last_lookup.sources["mdns"] == 1


# ------------------------------------------------------- discovery responder


class FakeExchange:
    def __init__(self, request: dict[str, Any]) -> None:
        self.request = request
        self.sent: list[dict[str, Any]] = []

    async def send(self, message: dict[str, Any]) -> None:
        self.sent.append(dict(message))

    def peers(self) -> list[str]:
        [frame] = self.sent
        assert frame["type"] == "discovery_response"
        return [p["peer_id"] for p in frame["peers"]]


async def test_responder_learns_connected_hosts_and_lists_them(net: Network) -> None:
    h1, h2, client = fake_peer_id(), fake_peer_id(), fake_peer_id()
    net.hosts.update({h1: host(h1, "llama"), h2: host(h2, "qwen")})
    net.non_hosts.add(client)
    async with discovery() as (found, node):
        node.control.connected = [h1, client, h2]
        exchange = FakeExchange({"type": "discovery_request", "models": ["qwen"]})
        await found._answer_discovery(exchange)  # type: ignore[arg-type]
        assert exchange.peers() == [h2, h1]  # the host serving the model first
        [frame] = exchange.sent
        assert frame["peers"][0]["models"] == ["qwen"]
        assert frame["peers"][0]["addrs"] == ["/ip4/10.0.0.1/tcp/4001"]
        assert found.not_a_host(client)

        # Within LEARN_GAP: answered from what is known, no new round.
        again = FakeExchange({"type": "discovery_request", "limit": 1})
        await found._answer_discovery(again)  # type: ignore[arg-type]
        assert len(again.peers()) == 1
        assert node.control.list_calls == 1
        assert sorted(p for p, _ in net.status_asked) == sorted([h1, h2, client])


async def test_responder_waits_at_most_exchange_wait(net: Network) -> None:
    fast, slow = fake_peer_id(), fake_peer_id()
    net.hosts.update({fast: host(fast), slow: host(slow)})
    net.slow[slow] = 1.0
    async with discovery(exchange_wait=0.2, status_timeout=3.0) as (found, node):
        node.control.connected = [slow, fast]
        exchange = FakeExchange({"type": "discovery_request"})
        started = anyio.current_time()
        await found._answer_discovery(exchange)  # type: ignore[arg-type]
        assert anyio.current_time() - started < 0.5
        assert exchange.peers() == [fast]
        # The slow answer is not lost: the round goes on and serves the next request.
        await anyio.sleep(1.0)
        later = FakeExchange({"type": "discovery_request"})
        await found._answer_discovery(later)  # type: ignore[arg-type]
        assert set(later.peers()) == {fast, slow}
        assert net.asked(slow) == 1


async def test_responder_asks_a_bounded_number_of_peers(net: Network) -> None:
    peers = [fake_peer_id() for _ in range(10)]
    net.hosts.update({p: host(p) for p in peers})
    async with discovery(exchange_probes=4) as (found, node):
        node.control.connected = [ME, *peers]  # our own id is never asked
        await found._answer_discovery(FakeExchange({"type": "discovery_request"}))  # type: ignore[arg-type]
        assert [p for p, _ in net.status_asked] == peers[:4]
        await anyio.sleep(service_mod.LEARN_GAP + 0.05)
        await found._answer_discovery(FakeExchange({"type": "discovery_request"}))  # type: ignore[arg-type]
        assert [p for p, _ in net.status_asked] == peers[:8]  # known hosts are not re-asked


async def test_responder_refuses_a_bad_request_at_once(net: Network) -> None:
    async with discovery() as (found, node):
        node.control.connected = [fake_peer_id()]
        with pytest.raises(BadRequestError):
            await found._answer_discovery(FakeExchange({"type": "discovery_request", "limit": "x"}))  # type: ignore[arg-type]
        assert node.control.list_calls == 0


async def test_a_local_host_comes_first_in_answers(net: Network) -> None:
    cached = fake_peer_id()
    async with discovery() as (found, _):
        found.peer_cache.remember(cached, ("/ip4/10.0.0.7/tcp/1",), ("m",))
        found.local_host = PeerInfo(peer_id=ME, addrs=("/ip4/10.0.0.8/tcp/1",), models=("m",))
        exchange = FakeExchange({"type": "discovery_request"})
        await found._answer_discovery(exchange)  # type: ignore[arg-type]
        assert exchange.peers() == [ME, cached]


async def test_responder_asks_a_cached_host_again_once_its_entry_is_old(net: Network) -> None:
    fresh, old = fake_peer_id(), fake_peer_id()
    net.hosts.update({fresh: host(fresh, "new"), old: host(old, "new")})
    async with discovery(not_a_host_ttl=60.0) as (found, node):
        found.peer_cache.remember(fresh, ("/ip4/10.0.0.5/tcp/1",), ("old",))
        found.peer_cache.remember(old, ("/ip4/10.0.0.6/tcp/1",), ("old",), now=time.time() - 61)
        node.control.connected = [fresh, old]
        exchange = FakeExchange({"type": "discovery_request"})
        await found._answer_discovery(exchange)  # type: ignore[arg-type]
        assert [p for p, _ in net.status_asked] == [old]
        models = {p["peer_id"]: p["models"] for p in exchange.sent[0]["peers"]}
        assert models == {fresh: ["old"], old: ["new"]}
