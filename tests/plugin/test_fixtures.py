"""The plugin's fixtures against real p2pd, on asyncio and trio."""

from __future__ import annotations

import os
from collections.abc import Callable

import anyio
import pytest

from fabstir_sidecar import (
    DiscoveryManager,
    FabstirClient,
    FabstirError,
    HostCriteria,
    NoMatchingHostError,
    RetryConfig,
)
from fabstir_sidecar.testing import HostSpec, NetworkFactory, NetworkNode, SyncNetwork
from fabstir_sidecar.testing.netnode import process_gone

pytestmark = pytest.mark.integration


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


async def test_network_of_hosts_is_found_by_criteria(fabstir_network: NetworkFactory) -> None:
    net = await fabstir_network(
        hosts=[
            HostSpec(models=["m"], reputation=90, location="DE"),
            HostSpec(models=["m"], reputation=10, location="FR"),
            HostSpec(models=["other"]),
        ],
        bootstrap=True,
    )
    assert net.bootstrap is not None
    assert [h.name for h in net.hosts] == ["host0", "host1", "host2"]
    assert all(h.peer_id and h.address.endswith(h.peer_id) for h in net.nodes)
    peers = await net.bootstrap.node.get_connected_peers()
    assert {h.peer_id for h in net.hosts} <= set(peers)

    client = await net.client(connect=False)  # only the bootstrap node: real discovery
    found = await client.node.find_host(HostCriteria(required_models=("m",), location="DE"))
    assert found.host.peer_id == net.hosts[0].peer_id
    result = await client.run_job(found.host.peer_id, "m", "hello there")
    assert result.content == "echo: hello there"


async def test_killed_host_is_gone_and_comes_back_on_restart(
    fabstir_network: NetworkFactory,
) -> None:
    net = await fabstir_network(hosts=[HostSpec(models=["m"])])
    host = net.hosts[0]
    client = await net.client(retry=RetryConfig.none())
    old_pid = host.daemon_pid
    assert old_pid is not None
    await host.kill()
    assert process_gone(old_pid) and not host.running
    with pytest.raises(Exception):  # noqa: B017 - unreachable, in whichever words
        await client.run_job(host.peer_id, "m", "x")
    peer_id, address = host.peer_id, host.address
    await host.restart()
    assert host.running and host.daemon_pid != old_pid
    assert (host.peer_id, host.address) == (peer_id, address)  # same key, same port
    # a fresh client: the first one's p2pd is in libp2p's dial backoff for that peer
    fresh = await net.client()
    assert (await fresh.run_job(host.peer_id, "m", "back")).content == "echo: back"


async def test_supervised_host_daemon_restarts_by_itself(fabstir_network: NetworkFactory) -> None:
    net = await fabstir_network(hosts=[HostSpec(models=["m"], restart_daemon=True)])
    host = net.hosts[0]
    old_pid = host.daemon_pid
    await host.kill()
    await host.wait_running()
    assert host.daemon_pid not in (None, old_pid)
    assert host.node.restarts == 1


async def test_busy_and_slow_hosts(fabstir_network: NetworkFactory) -> None:
    net = await fabstir_network(hosts=[HostSpec(models=["m"], max_jobs=2)])
    host = net.hosts[0]
    client = await net.client(retry=RetryConfig.none())
    host.make_busy()
    with pytest.raises(FabstirError, match="busy"):  # the library's busy answer, whatever type
        await client.run_job(host.peer_id, "m", "x")
    status = await client.get_status(host.peer_id)
    assert status.host.active_jobs == status.host.max_jobs == 2
    host.clear_faults()
    host.make_slow(0.5)
    with anyio.move_on_after(0.2) as scope:
        await client.run_job(host.peer_id, "m", "slow")
    assert scope.cancelled_caught
    tokens = [t async for t in client.stream_job(host.peer_id, "m", "a b")]
    assert tokens == ["echo:", " a", " b"]


async def test_paused_host_times_out_then_answers_again(fabstir_network: NetworkFactory) -> None:
    net = await fabstir_network(hosts=[HostSpec(models=["m"])])
    host = net.hosts[0]
    client = FabstirClient(
        (await net.add_client_node()).node, retry=RetryConfig.none(), request_timeout=0.5
    )
    await client.node.connect_to_peer(host.address)
    await host.pause()
    assert host.paused
    with pytest.raises(Exception):  # noqa: B017 - a timeout of some layer
        await client.get_status(host.peer_id)
    await host.resume()
    assert (await client.get_status(host.peer_id)).host.peer_id == host.peer_id


async def test_paused_host_is_stopped_at_teardown(fabstir_network: NetworkFactory) -> None:
    net = await fabstir_network(hosts=[HostSpec(models=["m"])])
    await net.hosts[0].pause()  # left paused: teardown resumes and stops it


async def test_no_host_matches(fabstir_network: NetworkFactory) -> None:
    net = await fabstir_network(hosts=[HostSpec(models=["m"], reputation=5)])
    client = await net.client()
    with pytest.raises(NoMatchingHostError):
        await client.node.find_host(HostCriteria(min_reputation=50))


async def test_fabstir_node_is_a_running_node_without_peers(
    fabstir_node: DiscoveryManager,
) -> None:
    assert fabstir_node.is_running()
    assert await fabstir_node.get_connected_peers() == []
    pid = fabstir_node.daemon_pid
    assert pid is not None
    os.kill(pid, 0)  # it is ours and alive


@pytest.mark.fabstir_host(models=["llama"], reputation=70, location="us")
async def test_fabstir_host_marker(
    fabstir_host: NetworkNode, fabstir_node: DiscoveryManager
) -> None:
    client = FabstirClient(fabstir_node)
    status = await client.get_status(fabstir_host.address)
    assert status.host.models == ("llama",)
    assert (status.host.reputation, status.host.location) == (70, "US")


async def test_terminate_stops_the_daemon_cleanly(fabstir_host: NetworkNode) -> None:
    pid = fabstir_host.daemon_pid
    assert pid is not None
    await fabstir_host.terminate()
    assert process_gone(pid)
    assert not fabstir_host.running


def test_sync_face(fabstir_network_sync: Callable[..., SyncNetwork]) -> None:
    net = fabstir_network_sync(
        hosts=[HostSpec(models=["m"]), HostSpec(models=["m"], location="DE")]
    )
    client = net.client()
    found = client.find_host(HostCriteria(location="DE"))
    assert found.host.peer_id == net.hosts[1].peer_id
    assert client.run_job(net.hosts[1].peer_id, "m", "sync").content == "echo: sync"
    assert client.stream_job(net.hosts[0].peer_id, "m", "a") == ["echo:", " a"]
    pid = net.hosts[0].daemon_pid
    net.hosts[0].kill()
    assert process_gone(pid)
    net.hosts[0].restart()
    assert net.hosts[0].running


def test_sync_face_on_trio(fabstir_network_sync: Callable[..., SyncNetwork]) -> None:
    net = fabstir_network_sync(hosts=[HostSpec(models=["m"])], backend="trio")
    assert net.client().run_job(net.hosts[0].peer_id, "m", "trio").content == "echo: trio"


# The shared network: one per session, reset after each test. The two tests below run in
# this order (pytest keeps file order): the first breaks it, the second finds it whole.


def test_shared_network_can_be_broken_by_a_test(fabstir_shared_network: SyncNetwork) -> None:
    net = fabstir_shared_network
    assert len(net.hosts) == 3
    first, second = net.hosts[0], net.hosts[1]
    client = net.client()
    assert client.run_job(first.peer_id, "echo", "hi").content == "echo: hi"
    first.kill()
    second.make_busy()
    assert not first.running


def test_shared_network_is_whole_again_for_the_next_test(
    fabstir_shared_network: SyncNetwork,
) -> None:
    net = fabstir_shared_network
    assert all(h.running for h in net.hosts)
    assert not any(h.faults.busy for h in net.hosts)
    assert len(net.network.clients) == 0  # the last test's client node was stopped
    client = net.client()
    for host in net.hosts:
        assert client.run_job(host.peer_id, "echo", "again").content == "echo: again"
