"""The Docker SDK launcher (``P2P_DAEMON=docker``) against the real engine.

A node whose p2pd is a container of ``fabstir-p2pd:local`` talks with a node whose p2pd is a
local process, both ways; its daemon container, killed, is restarted and the node serves again;
it is removed on stop, on a failed start and by the next node after a crash (by label). The
CLI takes the same choice from the environment.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import pytest

from fabstir_sidecar import DaemonStartError, DiscoveryManager

from ..integration.helpers import Inbox, eventually, make_node

pytestmark = [
    pytest.mark.integration,
    pytest.mark.containers,
    pytest.mark.timeout(180),
    pytest.mark.usefixtures("docker_engine", "no_container_left"),
]

LABEL = "io.fabstir.sidecar"
OWNER = f"{socket.gethostname()}/{os.getpid()}"


@pytest.fixture
def engine() -> Iterator[Any]:
    client = docker.from_env()
    yield client
    client.close()


def ours(engine: Any, owner: str = OWNER) -> list[Any]:
    return list(
        engine.containers.list(all=True, filters={"label": f"io.fabstir.sidecar.owner={owner}"})
    )


def our_networks(engine: Any, owner: str = OWNER) -> list[Any]:
    return list(engine.networks.list(filters={"label": f"io.fabstir.sidecar.owner={owner}"}))


@pytest.fixture
def no_container_left(docker_engine: None) -> Iterator[None]:
    yield
    client = docker.from_env()
    try:
        left, networks = ours(client), our_networks(client)
        for container in left:  # do not leave them to the next test, but fail this one
            container.remove(force=True)
        for network in networks:
            network.remove()
        assert not left, f"p2pd containers left behind: {[c.name for c in left]}"
        assert not networks, f"networks left behind: {[n.name for n in networks]}"
    finally:
        client.close()


def docker_node(**options: Any) -> DiscoveryManager:
    values: dict[str, Any] = {
        "daemon": "docker",
        "listen": ["/ip4/0.0.0.0/tcp/0"],
        "enable_mdns": False,
        "enable_dht": False,
        "connection_timeout": 5.0,
    }
    values.update(options)
    return DiscoveryManager(**values)


def peer_id_of(key: Path) -> str:
    shown = subprocess.run(
        [Path(sys.executable).with_name("fabstir-sidecar"), "identity", "--show", key],
        capture_output=True,
        text=True,
        check=True,
    )
    return shown.stdout.strip()


def dead_pid() -> int:
    """A pid of this machine that no longer runs."""
    with subprocess.Popen([sys.executable, "-c", "pass"]) as proc:
        proc.wait()
    return proc.pid


def bridge_addr(node_addrs: list[str]) -> tuple[str, str]:
    """(the container's address on the bridge, the host's address facing it)."""
    addr = next(a for a in node_addrs if not a.startswith("/ip4/127."))
    ip = addr.split("/")[2]
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.connect((ip, 4001))
        return addr, str(probe.getsockname()[0])


async def exchange(container_node: DiscoveryManager, local: DiscoveryManager) -> None:
    """One SDK message each way between the two nodes."""
    inbox_c, inbox_l = Inbox(), Inbox()
    container_node.on_message(inbox_c)
    local.on_message(inbox_l)
    await container_node.send_message((await local.get_addrs())[0], {"to": "local"})
    addr, _ = bridge_addr(await container_node.get_addrs())
    await local.send_message(addr, {"to": "container"})
    assert (await inbox_l.wait_for(1))[-1] == (container_node.peer_id, {"to": "local"})
    assert (await inbox_c.wait_for(1))[-1] == (local.peer_id, {"to": "container"})


@pytest.mark.anyio
async def test_node_on_a_container_daemon_talks_both_ways(
    p2pd_path: str, engine: Any, tmp_path: Path
) -> None:
    key = tmp_path / "node.key"
    async with docker_node(identity_file=key) as node:
        (container,) = ours(engine)
        assert container.labels[LABEL] == "p2pd"
        assert container.attrs["Config"]["User"] == "10001:10001"
        (network,) = our_networks(engine)  # a bridge of its own, and only that one
        assert list(container.attrs["NetworkSettings"]["Networks"]) == [network.name]
        assert node.daemon_pid is not None
        assert node.peer_id == peer_id_of(key)  # the node's own key, copied in
        _, host_ip = bridge_addr(await node.get_addrs())
        async with make_node(p2pd_path, listen=[f"/ip4/{host_ip}/tcp/0"]) as local:
            await exchange(node, local)
    assert not ours(engine)


@pytest.mark.anyio
async def test_a_killed_daemon_container_is_restarted_and_serves_again(
    p2pd_path: str, engine: Any
) -> None:
    async with docker_node() as node:
        _, host_ip = bridge_addr(await node.get_addrs())
        async with make_node(p2pd_path, listen=[f"/ip4/{host_ip}/tcp/0"]) as local:
            await exchange(node, local)
            (container,) = ours(engine)
            container.kill()
            await eventually(lambda: node.restarts == 1 and node.is_running(), timeout=60)
            assert [c.id for c in ours(engine)] == [container.id]  # the same one, restarted
            await exchange(node, local)  # handlers re-registered, dialable again


@pytest.mark.anyio
async def test_leftovers_of_a_crashed_node_are_removed(engine: Any) -> None:
    owner = f"{socket.gethostname()}/{dead_pid()}"
    labels = {LABEL: "p2pd", "io.fabstir.sidecar.owner": owner}
    network = engine.networks.create(f"fabstir-test-leftover-{os.getpid()}", labels=labels)
    engine.containers.create(
        "fabstir-p2pd:local",
        command=["-listen", "/ip4/127.0.0.1/tcp/5000", "-bootstrapPeers", "", "-noListenAddrs"],
        labels=labels,
        network=network.name,
    )
    try:
        async with docker_node():
            assert not ours(engine, owner)
            assert not our_networks(engine, owner)
    finally:
        for container in ours(engine, owner):
            container.remove(force=True)
        for leftover in our_networks(engine, owner):
            leftover.remove()


@pytest.mark.anyio
async def test_a_failed_start_leaves_no_container(engine: Any) -> None:
    # An image without p2pd: the container is created, then cannot start.
    with pytest.raises(DaemonStartError, match="p2pd container"):
        async with docker_node(daemon_image="fabstir-python:local"):
            pass  # pragma: no cover - never reached
    assert not ours(engine)
    with pytest.raises(DaemonStartError, match=r"build_images\.py"):
        async with docker_node(daemon_image="fabstir-no-such-image:local"):
            pass  # pragma: no cover


def test_cli_node_from_the_environment(engine: Any) -> None:
    env = {**os.environ, "P2P_DAEMON": "docker", "P2P_LISTEN_ADDRESSES": '["/ip4/0.0.0.0/tcp/0"]'}
    cli = Path(sys.executable).with_name("fabstir-sidecar")
    with subprocess.Popen(
        [cli, "node", "--json"], env=env, stdout=subprocess.PIPE, text=True
    ) as proc:
        try:
            assert proc.stdout is not None
            ready = json.loads(proc.stdout.readline())
            assert ready["event"] == "ready", ready
            (container,) = [
                c
                for c in engine.containers.list(filters={"label": f"{LABEL}=p2pd"})
                if c.labels["io.fabstir.sidecar.owner"].endswith(f"/{proc.pid}")
            ]
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=60) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
    with pytest.raises(docker.errors.NotFound):
        engine.containers.get(container.id)
