"""find_host on a real loopback network (PROTOCOL.md sections 4 and 6).

One module-scoped network — a bootstrap node, six hosts with distinct models, reputations,
locations, capacity and load, and a client that knows only the bootstrap node — is built
with the package's test plugin (``fabstir_sidecar.testing.network_sync``: the network runs
in a background event loop), and each test runs its async body there with ``net.run``.
Tests that need nodes of their own (peer cache, a host that dies mid-search, connection
monitoring) start them inside their body, so the shared network stays as it was built.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import anyio
import anyio.abc
import pytest

from fabstir_sidecar.client import FabstirClient, RetryConfig
from fabstir_sidecar.core.errors import NoMatchingHostError
from fabstir_sidecar.core.settings import NodeConfig
from fabstir_sidecar.daemon.identity import load_or_create_identity
from fabstir_sidecar.discovery.config import FinderConfig
from fabstir_sidecar.discovery.matching import CRITERIA, HostCriteria, rank_key
from fabstir_sidecar.host.backends.echo import EchoBackend
from fabstir_sidecar.host.service import HostConfig, HostService
from fabstir_sidecar.node.manager import DiscoveryManager
from fabstir_sidecar.protocols.status import HostStatus
from fabstir_sidecar.testing import HostSpec, NetworkFactory, network_sync
from fabstir_sidecar.wire.keys import ANY_HOST_KEY, model_cid
from fabstir_sidecar.wire.messages import Host
from tests.integration import running_net
from tests.integration.helpers import free_port

pytestmark = pytest.mark.integration

T = TypeVar("T")

LLAMA = "llama-3.2-1b-instruct"
MISTRAL = "mistral-7b-instruct"
QWEN = "qwen2.5-7b-instruct"
PHI = "phi-3-mini"

SETUP_DEADLINE = 45.0
TEST_DEADLINE = 30.0
VETERAN_UPTIME = 10_000  # seconds added to one host's uptime (HostService internals)


@dataclass(frozen=True)
class Spec:
    models: tuple[str, ...]
    reputation: int
    location: str | None
    max_jobs: int = 4
    busy: bool = False  # one long job keeps a slot taken: active_jobs == 1
    veteran: bool = False  # uptime_s >= VETERAN_UPTIME

    def config(self) -> HostConfig:
        return HostConfig(
            models=self.models,
            reputation=self.reputation,
            location=self.location,
            max_jobs=self.max_jobs,
        )


SPECS: dict[str, Spec] = {
    "a": Spec((LLAMA,), 70, "US"),
    "b": Spec((LLAMA, MISTRAL), 95, "DE"),
    "c": Spec((LLAMA, QWEN), 92, "us", max_jobs=2, busy=True),
    "d": Spec((MISTRAL,), 88, "US"),
    "e": Spec((QWEN,), 60, "JP", veteran=True),
    "f": Spec((PHI, MISTRAL), 40, None, max_jobs=1),
}
ALL = frozenset(SPECS)


class RunningHost(running_net.RunningHost):
    @property
    def spec(self) -> Spec:
        return SPECS[self.name]


@dataclass
class Network(running_net.PortalNet):
    DEADLINE: ClassVar[float] = TEST_DEADLINE
    base: NodeConfig
    boot: DiscoveryManager
    boot_addr: str
    hosts: dict[str, RunningHost]
    client: DiscoveryManager

    def name_of(self, peer_id: str) -> str:
        for name, host in self.hosts.items():
            if host.peer_id == peer_id:
                return name
        return f"?{peer_id[-6:]}"

    def names(self, ranked: list[HostStatus]) -> set[str]:
        return {self.name_of(c.host.peer_id) for c in ranked}

    def client_node(self, **options: Any) -> DiscoveryManager:
        """A new node that knows only the bootstrap node (unless told otherwise)."""
        finder = options.pop("finder", None)
        options.setdefault("bootstrap", (self.boot_addr,))
        return DiscoveryManager(self.base, finder=finder, **options)


async def wait_until(
    check: Callable[[], Awaitable[bool]], timeout: float, what: str, step: float = 0.1
) -> None:
    deadline = anyio.current_time() + timeout
    while not await check():
        if anyio.current_time() > deadline:
            raise AssertionError(f"not within {timeout}s: {what}")
        await anyio.sleep(step)


async def find_all_hosts(
    node: DiscoveryManager, net: Network, timeout: float = 15.0
) -> list[HostStatus]:
    """Poll ``find_hosts()`` until every host of the network answered (DHT is eventual)."""
    ranked: list[HostStatus] = []

    async def all_found() -> bool:
        nonlocal ranked
        with contextlib.suppress(NoMatchingHostError):
            ranked = await node.find_hosts()
        return net.names(ranked) >= ALL

    await wait_until(all_found, timeout, f"all hosts found (last: {net.names(ranked)})")
    return ranked


async def hold_a_job(boot: DiscoveryManager, host: RunningHost) -> None:
    """A job that runs until the network stops (the host's backend is slow)."""
    client = FabstirClient(boot, retry=RetryConfig.none(), job_timeout=3600)
    with contextlib.suppress(Exception):
        await client.run_job(host.peer_id, host.spec.models[0], "hold this slot")


DHT_SERVERS = {"enable_dht": True, "dht_mode": "server", "provide_interval": 600.0}


def host_specs() -> list[HostSpec]:
    return [
        HostSpec(
            name=name,
            models=spec.models,
            reputation=spec.reputation,
            location=spec.location,
            max_jobs=spec.max_jobs,
            backend=EchoBackend(delay=600.0 if spec.busy else 0.0),
        )
        for name, spec in SPECS.items()
    ]


async def prepare(net: Network, tg: anyio.abc.TaskGroup) -> None:
    """Wait until every host is advertised, hold the busy hosts' job slots, age the veteran
    and let the client learn every host once."""
    for host in net.hosts.values():
        if host.spec.veteran:
            host.service._started_at -= VETERAN_UPTIME  # internals: an old host, at once
    for host in net.hosts.values():
        await host.service.advertised.wait()
    for host in net.hosts.values():
        if host.spec.busy:
            tg.start_soon(hold_a_job, net.boot, host)

            async def admitted(h: RunningHost = host) -> bool:
                return h.service.active_jobs == 1

            await wait_until(admitted, 10, f"a job running on host {host.name}")
    # The client learns the hosts once; afterwards they are also "known" candidates.
    await find_all_hosts(net.client, net)


async def run_until_cancelled(
    net: Network, *, task_status: anyio.abc.TaskStatus[anyio.CancelScope]
) -> None:
    """The network's background work (the held jobs), cancelled before the nodes stop."""
    async with anyio.create_task_group() as tg:
        with anyio.fail_after(SETUP_DEADLINE):
            await prepare(net, tg)
        task_status.started(tg.cancel_scope)
        await anyio.sleep_forever()


@pytest.fixture(scope="module")
def net(p2pd_binary: Path) -> Iterator[Network]:
    with network_sync(host_specs(), p2pd_path=str(p2pd_binary), node_options=DHT_SERVERS) as sync:
        running = sync.network
        assert running.bootstrap is not None
        client = sync.call(running.add_client_node)  # knows only the bootstrap node
        base = NodeConfig.load(
            env={}, p2pd_path=str(p2pd_binary), enable_mdns=False, connection_timeout=5.0,
            **DHT_SERVERS,
        )  # fmt: skip
        hosts = {
            h.name: RunningHost(h.name, h.node, h.service)
            for h in running.hosts
            if h.service is not None
        }
        network = Network(
            sync.portal, base, running.bootstrap.node, running.bootstrap.address, hosts, client.node
        )
        _, held_jobs = sync.portal.start_task(run_until_cancelled, network)
        try:
            yield network
        finally:
            sync.portal.call(held_jobs.cancel)


def assert_ranked(ranked: list[HostStatus]) -> None:
    assert ranked == sorted(ranked, key=rank_key), "find_hosts must rank by rank_key"
    assert all(c.latency_ms > 0 for c in ranked)


def assert_records(net: Network, ranked: list[HostStatus]) -> None:
    """Each answer is the host's own record, as configured."""
    for c in ranked:
        host: Host = c.host
        spec = SPECS[net.name_of(host.peer_id)]
        assert host.models == spec.models
        assert host.reputation == spec.reputation
        assert host.location == (spec.location.upper() if spec.location else None)
        assert host.max_jobs == spec.max_jobs
        assert host.active_jobs == (1 if spec.busy else 0)
        assert all(a.endswith(f"/p2p/{host.peer_id}") for a in host.addrs)


# --------------------------------------------------------------------- criteria

CASES: list[tuple[str, HostCriteria, set[str]]] = [
    ("no criteria", HostCriteria(), set(ALL)),
    ("one model, one host", HostCriteria(required_models=(PHI,)), {"f"}),
    ("one model, three hosts", HostCriteria(required_models=(LLAMA,)), {"a", "b", "c"}),
    ("two models", HostCriteria(required_models=(LLAMA, MISTRAL)), {"b"}),
    ("two models (other pair)", HostCriteria(required_models=(PHI, MISTRAL)), {"f"}),
    ("min_reputation", HostCriteria(min_reputation=90), {"b", "c"}),
    ("min_reputation is inclusive", HostCriteria(min_reputation=95), {"b"}),
    ("location, lower case", HostCriteria(location="de"), {"b"}),
    ("location, mixed case", HostCriteria(location="Us"), {"a", "c", "d"}),
    ("min_uptime", HostCriteria(min_uptime=VETERAN_UPTIME // 2), {"e"}),
    ("generous max_latency", HostCriteria(max_latency=60_000.0), set(ALL)),
    (
        "model + reputation + location",
        HostCriteria(required_models=(LLAMA,), min_reputation=80, location="US"),
        {"c"},
    ),
    ("model + reputation", HostCriteria(required_models=(MISTRAL,), min_reputation=85), {"b", "d"}),
    (
        "model + uptime",
        HostCriteria(required_models=(QWEN,), min_uptime=VETERAN_UPTIME // 2),
        {"e"},
    ),
    (
        "model + location + reputation + latency",
        HostCriteria(required_models=(QWEN,), location="jp", min_reputation=50, max_latency=60e3),
        {"e"},
    ),
]


def test_find_hosts_applies_each_criterion_and_combinations(net: Network) -> None:
    async def body() -> None:
        for label, criteria, expected in CASES:
            ranked = await net.client.find_hosts(criteria)
            assert net.names(ranked) == expected, f"{label}: {criteria}"
            assert_ranked(ranked)
            assert_records(net, ranked)
            best = await net.client.find_host(criteria)
            assert net.name_of(best.host.peer_id) in expected, f"{label}: find_host"
            if len(expected) == 1:
                assert best.host.peer_id == ranked[0].host.peer_id, label

    net.run(body, timeout=60)


def test_busy_host_reports_its_load_and_ranking_follows_rank_key(net: Network) -> None:
    async def body() -> None:
        ranked = await net.client.find_hosts(HostCriteria(required_models=(LLAMA, QWEN)))
        assert net.names(ranked) == {"c"}
        assert ranked[0].host.active_jobs == 1
        assert ranked[0].host.max_jobs == 2
        everyone = await net.client.find_hosts()
        assert_ranked(everyone)
        keys = [rank_key(c) for c in everyone]
        assert keys == sorted(keys)

    net.run(body)


def test_tiny_max_latency_matches_nothing(net: Network) -> None:
    async def body() -> None:
        with pytest.raises(NoMatchingHostError) as caught:
            await net.client.find_host(HostCriteria(max_latency=0.0001))
        err = caught.value
        assert err.answered == len(SPECS)
        assert err.excluded == {**dict.fromkeys(CRITERIA, 0), "max_latency": len(SPECS)}
        assert f"{len(SPECS)} answered status" in str(err)
        assert f"max_latency excluded {len(SPECS)}" in str(err)

    net.run(body)


def test_no_match_error_counts_candidates_and_each_criterion(net: Network) -> None:
    criteria = HostCriteria(
        required_models=(LLAMA,),
        min_reputation=80,
        min_uptime=VETERAN_UPTIME // 2,
        location="JP",
    )
    # d, e, f lack llama; a has reputation 70; b and c are young. Nothing reaches location.
    expected = {
        "required_models": 3,
        "min_reputation": 1,
        "max_latency": 0,
        "min_uptime": 2,
        "location": 0,
    }

    async def body() -> None:
        with pytest.raises(NoMatchingHostError) as caught:
            await net.client.find_hosts(criteria)
        err = caught.value
        seen = net.client.discovery.last_lookup.candidates
        assert err.excluded == expected
        assert err.answered == len(SPECS)
        # Every host plus the bootstrap node (which does not speak status) was a candidate.
        assert err.seen == seen >= len(SPECS) + 1
        message = str(err)
        assert "\n" not in message
        assert f"{seen} candidates seen, {len(SPECS)} answered status" in message
        for name, count in expected.items():
            if count:
                assert f"{name} excluded {count}" in message
            else:
                assert f"{name} excluded" not in message

    net.run(body)


# -------------------------------------------------------------------------- DHT


def test_dht_finds_a_host_the_client_was_never_told_about(net: Network) -> None:
    f = net.hosts["f"]

    async def body() -> None:
        assert f.service.advertised.is_set() and f.service.provide_rounds >= 1
        async with net.client_node() as fresh:
            assert [r.ok for r in fresh.bootstrap_results] == [True]
            assert len(fresh.discovery.peer_cache) == 0
            found = await fresh.find_host(HostCriteria(required_models=(PHI,)))
            assert found.host.peer_id == f.peer_id
            sources = fresh.discovery.last_lookup.sources
            assert sources["dht"] >= 1, sources
            assert sources["known"] == 0, sources

            # The keys are PROTOCOL.md section 4's CIDs: ask the DHT directly.
            providers = [
                p.peer_id
                async for p in fresh.control.dht_find_providers(model_cid(PHI), count=1, timeout=5)
            ]
            assert providers == [f.peer_id]
            anyone = {
                p.peer_id
                async for p in fresh.control.dht_find_providers(
                    model_cid(ANY_HOST_KEY), count=20, timeout=5
                )
            }
            assert {h.peer_id for h in net.hosts.values()} <= anyone
            # The bootstrap node hosts nothing, so it provides nothing.
            assert net.boot.peer_id not in anyone

    net.run(body)


# -------------------------------------------------------- coalescing and bounds


def test_a_burst_of_find_host_calls_is_coalesced(net: Network) -> None:
    ttl = 1.5
    criteria = HostCriteria(required_models=(LLAMA,))

    async def body() -> None:
        async with net.client_node(finder=FinderConfig(status_ttl=ttl)) as warm:
            # Warm: connected to the hosts, which are in its peer cache.
            async def llama_hosts() -> bool:
                with contextlib.suppress(NoMatchingHostError):
                    return net.names(await warm.find_hosts(criteria)) == {"a", "b", "c"}
                return False

            await wait_until(llama_hosts, 15, "the llama hosts found")
            # Let the cached answers expire (a TTL, not a synchronisation): the burst must
            # really ask the network, once per candidate.
            await anyio.sleep(ttl + 0.2)
            before = warm.discovery.status_queries
            results: list[HostStatus] = []

            async def one() -> None:
                results.append(await warm.find_host(criteria))

            async with anyio.create_task_group() as tg:
                for _ in range(20):
                    tg.start_soon(one)
            made = warm.discovery.status_queries - before
            candidates = warm.discovery.last_lookup.candidates
            assert len(results) == 20
            assert {net.name_of(r.host.peer_id) for r in results} <= {"a", "b", "c"}
            assert 1 <= made <= candidates, f"{made} status queries for {candidates} candidates"

    net.run(body)


def test_status_queries_per_lookup_are_bounded(net: Network) -> None:
    async def body() -> None:
        async with net.client_node(finder=FinderConfig(max_queries=3)) as bounded:
            before = bounded.discovery.status_queries
            ranked = await bounded.find_hosts()
            lookup = bounded.discovery.last_lookup
            assert lookup.candidates > 3, lookup  # the bound really cut something
            assert lookup.status_queries <= 3, lookup
            assert bounded.discovery.status_queries - before <= 3
            assert 1 <= len(ranked) <= 3

    net.run(body)


# ------------------------------------------------------------------ peer cache


def test_peer_cache_survives_a_restart_without_bootstrap(net: Network, tmp_path: Path) -> None:
    async def body() -> None:
        async with net.client_node(data_dir=tmp_path) as first:
            await find_all_hosts(first, net)
        doc = json.loads((tmp_path / "peers.json").read_text(encoding="utf-8"))
        cached = {entry["peer_id"]: entry for entry in doc["peers"]}
        for host in net.hosts.values():
            entry = cached.get(host.peer_id)
            assert entry is not None, f"host {host.name} not in peers.json"
            assert entry["addrs"] and all("/p2p/" not in a for a in entry["addrs"])
            assert tuple(entry["models"]) == host.spec.models
        assert net.boot.peer_id not in cached  # not a host

        host_ids = {h.peer_id for h in net.hosts.values()}
        async with net.client_node(data_dir=tmp_path, bootstrap=()) as second:
            assert second.config.bootstrap == () and second.bootstrap_results == []

            async def reconnected() -> bool:
                return bool(host_ids & set(await second.get_connected_peers()))

            await wait_until(reconnected, 5, "a cached host reconnected on start")
            found = await second.find_host(HostCriteria(required_models=(PHI,)))
            assert found.host.peer_id == net.hosts["f"].peer_id
            assert second.discovery.last_lookup.sources["known"] >= len(SPECS)

    net.run(body)


# -------------------------------------------------------------- peer exchange


def test_peer_exchange_answers_with_found_hosts_matching_first(net: Network) -> None:
    async def body() -> None:
        async with net.client_node(bootstrap=(), enable_dht=False) as asker:
            client = FabstirClient(asker)
            target = (await net.client.get_addrs())[0]
            peers = await client.ask_discovery(target, models=[MISTRAL])
            ids = [p.peer_id for p in peers]
            assert {h.peer_id for h in net.hosts.values()} <= set(ids)
            assert net.client.peer_id not in ids  # the client hosts nothing
            serves = [MISTRAL in p.models for p in peers]
            assert serves == sorted(serves, reverse=True), "hosts serving the model come first"
            assert {net.name_of(p.peer_id) for p in peers if MISTRAL in p.models} == {
                "b",
                "d",
                "f",
            }
            for p in peers:
                if p.peer_id in {h.peer_id for h in net.hosts.values()}:
                    assert p.models == SPECS[net.name_of(p.peer_id)].models
                    assert p.addrs

            both = await client.ask_discovery(target, models=[LLAMA, MISTRAL], limit=2)
            assert len(both) == 2
            assert net.name_of(both[0].peer_id) == "b"  # the only host serving both

    net.run(body)


def test_a_bootstrap_node_answers_with_the_hosts_connected_to_it(net: Network) -> None:
    """PROTOCOL.md 3.3: "the hosts the responder knows". A bootstrap node makes no lookups of
    its own; it asks its connected peers for their status when a discovery request comes."""

    async def body() -> None:
        async with contextlib.AsyncExitStack() as stack:
            boot = await stack.enter_async_context(DiscoveryManager(net.base, enable_dht=False))
            boot_addr = (await boot.get_addrs())[0]
            assert len(boot.discovery.peer_cache) == 0  # it never looked anything up
            host_node = await stack.enter_async_context(
                DiscoveryManager(net.base, bootstrap=(boot_addr,), enable_dht=False)
            )
            await HostService(host_node, HostConfig(models=(PHI, QWEN)), EchoBackend()).start()
            asker = await stack.enter_async_context(
                DiscoveryManager(net.base, bootstrap=(), enable_dht=False)
            )
            started = anyio.current_time()
            peers = await FabstirClient(asker).ask_discovery(boot_addr, models=[QWEN])
            assert anyio.current_time() - started < 3.0
            assert [p.peer_id for p in peers] == [host_node.peer_id]  # not the asker: no host
            assert peers[0].models == (PHI, QWEN)
            assert peers[0].addrs and all("/p2p/" not in a for a in peers[0].addrs)
            assert boot.discovery.not_a_host(asker.peer_id)

            # A client that knows only the bootstrap node finds the host without the DHT.
            async with DiscoveryManager(
                net.base, bootstrap=(boot_addr,), enable_dht=False
            ) as client:
                found = await client.find_host(HostCriteria(required_models=(QWEN,)))
                assert found.host.peer_id == host_node.peer_id
                assert client.discovery.last_lookup.sources["exchange"] == 1

    net.run(body)


def test_a_slow_peer_does_not_hold_up_a_discovery_answer(net: Network) -> None:
    async def body() -> None:
        async with contextlib.AsyncExitStack() as stack:
            boot = await stack.enter_async_context(
                DiscoveryManager(net.base, enable_dht=False, finder=FinderConfig(exchange_wait=0.3))
            )
            boot_addr = (await boot.get_addrs())[0]
            slow_node = await stack.enter_async_context(
                DiscoveryManager(net.base, bootstrap=(boot_addr,), enable_dht=False)
            )
            service = HostService(slow_node, HostConfig(models=(PHI,)), EchoBackend())
            record = service.status_record

            async def slow_record() -> Host:
                await anyio.sleep(1.5)
                return await record()

            service.status_record = slow_record  # type: ignore[method-assign]
            await service.start()
            asker = await stack.enter_async_context(
                DiscoveryManager(net.base, bootstrap=(), enable_dht=False)
            )
            client = FabstirClient(asker)
            started = anyio.current_time()
            assert await client.ask_discovery(boot_addr) == []
            assert anyio.current_time() - started < 1.2  # exchange_wait, not the 1.5 s

            async def listed() -> bool:
                return slow_node.peer_id in {
                    p.peer_id for p in await client.ask_discovery(boot_addr)
                }

            await wait_until(listed, 10, "the slow host listed once it answered")

    net.run(body)


def test_exchange_slots_go_to_a_reachable_bootstrap_first(net: Network, tmp_path: Path) -> None:
    dead = [
        f"/ip4/127.0.0.1/tcp/{free_port()}/p2p/{load_or_create_identity(tmp_path / f'{i}.key')}"
        for i in range(2)
    ]

    async def body() -> None:
        # One exchange slot, unreachable bootstrap peers besides the real one, no DHT: the
        # hosts are found only if the slot goes to the bootstrap node that is connected.
        async with net.client_node(
            bootstrap=(*dead, net.boot_addr),
            enable_dht=False,
            finder=FinderConfig(exchange_peers=1),
        ) as client:
            assert sorted(r.ok for r in client.bootstrap_results) == [False, False, True]
            ranked = await client.find_hosts(HostCriteria(required_models=(LLAMA,)))
            assert net.names(ranked) == {"a", "b", "c"}
            assert client.discovery.last_lookup.sources["exchange"] >= len(SPECS)

    net.run(body)


def test_a_non_host_is_skipped_for_not_a_host_ttl(net: Network) -> None:
    async def body() -> None:
        settings = FinderConfig(status_ttl=0.2, not_a_host_ttl=60.0)
        async with net.client_node(finder=settings) as fresh:
            await fresh.find_hosts()
            assert fresh.discovery.not_a_host(net.boot.peer_id)
            first = fresh.discovery.last_lookup
            assert first.skipped == 0 and first.failed >= 1  # the bootstrap node was asked
            await anyio.sleep(0.3)  # every status answer (and failure) expired
            await fresh.find_hosts()
            second = fresh.discovery.last_lookup
            assert second.skipped >= 1, second  # the bootstrap node, at least
            assert second.status_queries <= second.candidates - second.skipped, second
            assert fresh.discovery.not_a_host(net.boot.peer_id)

    net.run(body)


# ------------------------------------------------------- a host dies mid-search


def test_a_host_that_stops_mid_search_is_skipped(net: Network) -> None:
    async def body() -> None:
        entered = anyio.Event()
        stop_now = anyio.Event()
        stopped = anyio.Event()

        async def run_doomed(*, task_status: anyio.abc.TaskStatus[str]) -> None:
            async with net.client_node() as node:
                service = HostService(
                    node, HostConfig(models=(LLAMA,), reputation=99), EchoBackend()
                )
                answer = service.status_record

                async def slow_status() -> Host:
                    entered.set()
                    await anyio.sleep(3600)  # cancelled when the node stops
                    return await answer()

                service.status_record = slow_status  # type: ignore[method-assign]
                await service.start()
                with anyio.fail_after(15):
                    await service.advertised.wait()
                task_status.started(node.peer_id)
                await stop_now.wait()
            stopped.set()

        ranked: list[HostStatus] = []
        searched = anyio.Event()

        async def search(node: DiscoveryManager) -> None:
            ranked.extend(await node.find_hosts(HostCriteria(required_models=(LLAMA,))))
            searched.set()

        async with anyio.create_task_group() as tg:
            doomed = await tg.start(run_doomed)
            async with net.client_node() as searcher:
                tg.start_soon(search, searcher)
                await entered.wait()  # the searcher is waiting for the doomed host's status
                stop_now.set()
                await stopped.wait()
                await searched.wait()
                # Two failed candidates: the bootstrap node (no status) and the doomed host.
                assert searcher.discovery.last_lookup.failed >= 2
            # The search finished without error and without the doomed host.
            assert net.names(ranked) == {"a", "b", "c"}
            assert doomed not in {c.host.peer_id for c in ranked}

    net.run(body)


# ------------------------------------------------------- connection monitoring


def monitor_config(p2pd_path: str) -> NodeConfig:
    return NodeConfig.load(
        env={},
        p2pd_path=p2pd_path,
        enable_mdns=False,
        dht_mode="server",
        connection_timeout=5.0,
    )


@pytest.mark.anyio
async def test_lost_connection_to_bootstrap_is_restored(fabstir_network: NetworkFactory) -> None:
    with anyio.fail_after(TEST_DEADLINE):
        net = await fabstir_network(node_options={"enable_dht": True, "dht_mode": "server"})
        assert net.bootstrap is not None
        boot = net.bootstrap.node
        # No DHT: the bootstrap node is the client's only connection.
        client = (await net.add_client_node(enable_dht=False)).node
        assert await client.get_connected_peers() == [boot.peer_id]
        await client.control.disconnect(boot.peer_id)
        assert await client.get_connected_peers() == []
        started = time.monotonic()

        async def back() -> bool:
            return boot.peer_id in await client.get_connected_peers()

        await wait_until(back, 12, "the client reconnected to its bootstrap node")
        assert time.monotonic() - started < 12


@pytest.mark.anyio
async def test_unreachable_bootstrap_is_reported_and_retried(
    p2pd_path: str, tmp_path: Path
) -> None:
    base = monitor_config(p2pd_path)
    key = tmp_path / "boot.key"
    boot_id = load_or_create_identity(key)
    port = free_port()
    boot_addr = f"/ip4/127.0.0.1/tcp/{port}/p2p/{boot_id}"
    with anyio.fail_after(TEST_DEADLINE):
        async with DiscoveryManager(base, bootstrap=(boot_addr,)) as client:
            assert client.is_running()
            [result] = client.bootstrap_results
            assert result.address == boot_addr and result.peer_id == boot_id
            assert not result.ok
            assert result.error and boot_id in result.error

            async with DiscoveryManager(
                base, listen=(f"/ip4/127.0.0.1/tcp/{port}",), identity_file=key
            ) as boot:
                assert boot.peer_id == boot_id

                async def retried() -> bool:
                    return [r.ok for r in client.bootstrap_results] == [True]

                await wait_until(retried, 12, "the bootstrap peer retried in the background")
                assert boot_id in await client.get_connected_peers()


@pytest.mark.anyio
async def test_a_restarted_host_daemon_provides_again_at_once(
    fabstir_network: NetworkFactory,
) -> None:
    """The new daemon has no provider records: the host re-provides after the restart, not
    an hour (``provide_interval``) later, and a client finds it through the DHT again."""
    with anyio.fail_after(TEST_DEADLINE):
        net = await fabstir_network(
            hosts=[HostSpec(models=(LLAMA,), restart_daemon=True)],
            node_options={"enable_dht": True, "dht_mode": "server"},
        )
        host = net.hosts[0]
        service = host.service
        assert service is not None
        await service.advertised.wait()
        rounds = service.provide_rounds
        await host.kill()  # SIGKILL: the node's supervisor starts a new p2pd

        async def restarted_and_provided() -> bool:
            return host.node.restarts >= 1 and service.provide_rounds > rounds

        await wait_until(restarted_and_provided, 15, "the host provided again")
        client = (await net.add_client_node()).node  # knows only the bootstrap node
        found = await client.find_hosts(HostCriteria(required_models=(LLAMA,)))
        assert [h.host.peer_id for h in found] == [host.peer_id]
