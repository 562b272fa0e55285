"""(d) Hole punching: two nodes, each behind its own NAT, first connected through the relay;
DCUtR upgrades the connection to a direct one and the job afterwards runs over it.

go-libp2p punches only once a node has seen 4 distinct observers of its public address, so
the lab has 5 public peers (all bootstrap nodes running AutoNAT, each dialed by both)."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest

from fabstir_sidecar.client import FabstirClient, RetryConfig
from fabstir_sidecar.core.circuit import is_circuit
from fabstir_sidecar.node.manager import DiscoveryManager
from fabstir_sidecar.node.reachability import reachability_of
from tests.netns.nat_lab import NatLab, metrics_fetcher
from tests.netns.nat_nodes import MODEL, checked_lab, host_node, node, peers_of

pytestmark = [pytest.mark.netns, pytest.mark.anyio]

PUBLIC = ("r", "c", "o1", "o2", "o3")


@pytest.fixture
def lab(tmp_path: Path, p2pd_path: str) -> Iterator[NatLab]:
    with checked_lab(tmp_path, p2pd_path, public=True, natted=2, observers=3) as built:
        yield built


def listen_both(lab: NatLab, role: str) -> tuple[str, ...]:
    return (lab.listen(role), lab.listen(role, "quic-v1"))


async def direct_addrs(node_: DiscoveryManager, peer: str) -> list[str]:
    peers = await peers_of(node_)
    return [a for a in peers.get(peer, ()) if not is_circuit(a)]


async def test_hole_punch_upgrades_relayed_connection_and_job_runs_direct(lab: NatLab) -> None:
    with anyio.fail_after(90):
        async with contextlib.AsyncExitStack() as stack:
            publics = [
                await stack.enter_async_context(
                    node(lab, role, "bootstrap", enable_autonat=True, max_connections=50)
                )
                for role in PUBLIC
            ]
            boots = tuple([(await p.get_addrs())[0] for p in publics])
            relay = boots[0]
            host, _ = host_node(
                lab,
                "h1",
                bootstrap=boots,
                relays=(relay,),
                relay_client=True,
                enable_hole_punching=True,
                force_reachability="private",
                listen=listen_both(lab, "h1"),
            )
            await stack.enter_async_context(host)
            client_node = await stack.enter_async_context(
                node(
                    lab,
                    "h2",
                    "client",
                    bootstrap=boots,
                    enable_hole_punching=True,
                    force_reachability="private",
                    listen=listen_both(lab, "h2"),
                )
            )
            await anyio.sleep(2.0)  # identify with the 5 observers, the reservation
            started = time.monotonic()
            circuit = f"{relay}/p2p-circuit/p2p/{host.peer_id}"
            await client_node.connect_to_peer(circuit)
            direct: list[str] = []
            with anyio.move_on_after(30):
                while not direct:
                    await anyio.sleep(0.2)
                    direct = await direct_addrs(client_node, str(host.peer_id))
            upgraded_s = time.monotonic() - started
            print(f"DCUtR: direct {direct} after {upgraded_s:.1f}s")
            assert direct, "the relayed connection was not upgraded to a direct one"
            client = FabstirClient(client_node, retry=RetryConfig.none())
            tokens = [t async for t in client.stream_job(str(host.peer_id), MODEL, "punched")]
            assert "".join(tokens) == "echo: punched"
            assert await direct_addrs(client_node, str(host.peer_id))
            # it was a hole punch (the routers drop unsolicited SYNs), as the host counts it
            punched = await reachability_of(host, fetch=metrics_fetcher(lab, "h1"))
            assert punched.holepunch_successes >= 1, punched.metrics
            # more than the relay's 128 KiB limit: fine now that the connection is direct
            big = " ".join(["y" * 99] * 3000)
            result = await client.run_job(str(host.peer_id), MODEL, big)
            assert result.content == "echo: " + big
