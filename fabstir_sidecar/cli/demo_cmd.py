"""``fabstir-sidecar demo``: two real nodes on loopback exchange messages and run a job."""

from __future__ import annotations

import time
from typing import Annotated, Any

import anyio
import typer

from ..client import FabstirClient
from ..config import NodeConfig
from ..errors import FabstirError
from ..host.backends.echo import EchoBackend
from ..host.service import HostConfig, HostService
from ..node import DiscoveryManager
from .output import fail, say


def demo(
    p2pd: Annotated[str | None, typer.Option("--p2pd", help="Path of the p2pd binary.")] = None,
) -> None:
    """Two local nodes (each its own p2pd): connect, exchange messages, run a streamed job."""
    try:
        anyio.run(_demo, p2pd)
    except FabstirError as exc:
        fail(str(exc))


async def _demo(p2pd: str | None) -> None:
    t0 = time.perf_counter()

    def step(text: str) -> None:
        say(f"[{(time.perf_counter() - t0) * 1000:7.1f} ms] {text}")

    # Loopback only, no DHT, no mDNS: nothing leaves this machine.
    cfg = NodeConfig.load(env={}, p2pd_path=p2pd, enable_dht=False, enable_mdns=False)
    async with DiscoveryManager(cfg) as alice, DiscoveryManager(cfg) as bob:
        step(f"alice started: {alice.peer_id}")
        step(f"bob started:   {bob.peer_id}")
        inbox: dict[str, list[tuple[str, Any]]] = {"alice": [], "bob": []}
        arrived = {"alice": anyio.Event(), "bob": anyio.Event()}

        def inbox_of(name: str) -> Any:
            def handler(sender: str, message: Any) -> None:
                inbox[name].append((sender, message))
                arrived[name].set()

            return handler

        alice.on_message(inbox_of("alice"))
        bob.on_message(inbox_of("bob"))
        alice_addr = (await alice.get_addrs())[0]
        await bob.connect_to_peer(alice_addr)
        step(f"bob dialed alice at {alice_addr}")
        step(f"bob's connected peers: {await bob.get_connected_peers()}")

        await bob.send_message(alice.peer_id, {"type": "greeting", "text": "hello from bob"})
        with anyio.fail_after(10):
            await arrived["alice"].wait()
        sender, message = inbox["alice"][0]
        step(f"alice received {message} from {sender[-8:]} (bob: {sender == bob.peer_id})")

        await alice.send_message(bob.peer_id, {"type": "greeting", "text": "hi bob, alice here"})
        with anyio.fail_after(10):
            await arrived["bob"].wait()
        sender, message = inbox["bob"][0]
        step(f"bob received {message} from {sender[-8:]} (alice: {sender == alice.peer_id})")
        # alice also hosts a model (echo backend); bob runs a streamed job on her.
        host = HostService(
            alice,
            HostConfig(models=("llama-3.2-1b-instruct",), reputation=90, location="US"),
            EchoBackend(),
        )
        await host.start()
        client = FabstirClient(bob)
        status = await client.get_status(alice.peer_id)
        step(
            f"alice's status: models={list(status.host.models)} reputation="
            f"{status.host.reputation} latency={status.latency_ms:.2f} ms"
        )
        tokens = client.stream_job(
            alice.peer_id, "llama-3.2-1b-instruct", "what is a decentralized marketplace"
        )
        streamed = [token async for token in tokens]
        assert tokens.result is not None
        step(f"bob ran a streamed job: {len(streamed)} tokens -> {tokens.result.content!r}")
        step("stopping both nodes")
    step("done: both daemons stopped, sockets removed")
