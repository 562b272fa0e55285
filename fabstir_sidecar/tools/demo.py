"""The local demo network: a bootstrap node, N hosts and a client, step by step.

A bootstrap node, N hosts (different models, reputations, locations), and a client that
finds a host by criteria, checks it, runs a streamed job on it and sends it an SDK message.
Every node is a real p2pd process built from the role presets (:mod:`.roles`); everything
listens on 127.0.0.1 only (no mDNS, no traffic off the machine, the ``P2P_*`` environment
ignored) and is shut down at the end.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from typing import Any, Final

import anyio

from fabstir_sidecar.client import FabstirClient
from fabstir_sidecar.discovery.matching import HostCriteria
from fabstir_sidecar.host.backends.echo import EchoBackend
from fabstir_sidecar.host.service import HostConfig, HostService
from fabstir_sidecar.node.manager import DiscoveryManager
from fabstir_sidecar.tools.roles import role_config

__all__ = ["DEMO_CRITERIA", "HOST_PROFILES", "StepHandler", "run_demo"]

# (models, reputation, location) of the demo hosts, cycled when there are more hosts.
HOST_PROFILES: Final[tuple[tuple[tuple[str, ...], int, str], ...]] = (
    (("llama-3.2-1b-instruct", "qwen2.5-7b-instruct"), 92, "US"),
    (("llama-3.2-1b-instruct",), 70, "US"),
    (("llama-3.2-1b-instruct", "mistral-7b-instruct"), 95, "DE"),
    (("mistral-7b-instruct",), 88, "US"),
    (("qwen2.5-7b-instruct",), 60, "JP"),
)
# Host 1 always matches; from 3 hosts on there are two matches to rank.
DEMO_CRITERIA: Final = HostCriteria(required_models=("llama-3.2-1b-instruct",), min_reputation=80)

StepHandler = Callable[[float, str], None]
"""Called with the seconds since the demo started and what just happened."""


async def run_demo(n_hosts: int, *, p2pd: str | None = None, on_step: StepHandler) -> None:
    """Run the demo network with ``n_hosts`` hosts, reporting each step to ``on_step``."""
    t0 = time.perf_counter()

    def step(text: str) -> None:
        on_step(time.perf_counter() - t0, text)

    # Loopback only, DHT in server mode (a local network), no mDNS: nothing leaves the machine.
    local: dict[str, Any] = {
        "env": {},
        "p2pd_path": p2pd,
        "enable_mdns": False,
        "dht_mode": "server",
        "provide_interval": 600.0,
    }
    async with contextlib.AsyncExitStack() as stack:
        boot = await stack.enter_async_context(DiscoveryManager(role_config("bootstrap", **local)))
        boot_addr = (await boot.get_addrs())[0]
        step(f"bootstrap node up: {boot_addr}")

        services: list[HostService] = []
        host_nodes: dict[str, DiscoveryManager] = {}
        for i in range(n_hosts):
            models, reputation, location = HOST_PROFILES[i % len(HOST_PROFILES)]
            node = DiscoveryManager(role_config("host", bootstrap=(boot_addr,), **local))
            service = HostService(
                node,
                HostConfig(models=models, reputation=reputation, location=location),
                EchoBackend(),
            )
            node.on_start(service.start)  # serving before it connects to the bootstrap node
            await stack.enter_async_context(node)
            services.append(service)
            host_nodes[node.peer_id] = node
            step(
                f"host {i + 1} up: {node.peer_id[-8:]} models={list(models)} "
                f"reputation={reputation} location={location}"
            )

        client_node = await stack.enter_async_context(
            DiscoveryManager(role_config("client", bootstrap=(boot_addr,), **local))
        )
        step(f"client up: {client_node.peer_id[-8:]} (knows only the bootstrap node)")
        # DHT provide is slow on a tiny network; it runs in the background. Give it a moment
        # so the DHT is one of the sources, but the search works without it too.
        with anyio.move_on_after(3):
            for service in services:
                await service.advertised.wait()
        advertised = sum(s.advertised.is_set() for s in services)
        step(f"{advertised} of {n_hosts} hosts have their models in the DHT so far")

        step(
            f"client searches: models={list(DEMO_CRITERIA.required_models)} "
            f"min_reputation={DEMO_CRITERIA.min_reputation}"
        )
        ranked = await client_node.find_hosts(DEMO_CRITERIA)
        stats = client_node.discovery.last_lookup
        step(
            f"candidates {stats.candidates} (sources {stats.sources}), "
            f"status queries {stats.status_queries}, matches {len(ranked)}"
        )
        for rank, match in enumerate(ranked, start=1):
            h = match.host
            step(
                f"  #{rank} {h.peer_id[-8:]} reputation={h.reputation} location={h.location} "
                f"latency={match.latency_ms:.2f} ms free={h.max_jobs - h.active_jobs}"
            )
        best = ranked[0]

        client = FabstirClient(client_node)
        job = client.stream_job(
            best.host.peer_id,
            "llama-3.2-1b-instruct",
            "explain a decentralized LLM marketplace in a few words",
        )
        tokens: list[str] = []
        first_token_ms: float | None = None
        started = time.perf_counter()
        async for token in job:
            if first_token_ms is None:
                first_token_ms = (time.perf_counter() - started) * 1000
            tokens.append(token)
        assert job.result is not None
        step(
            f"streamed job on {best.host.peer_id[-8:]}: {len(tokens)} tokens, first after "
            f"{first_token_ms or 0:.2f} ms -> {job.result.content!r}"
        )

        got = anyio.Event()
        seen: list[tuple[str, Any]] = []
        host_node = host_nodes[best.host.peer_id]

        def on_message(sender: str, message: Any) -> None:
            seen.append((sender, message))
            got.set()

        host_node.on_message(on_message)
        await client_node.send_message(best.host.peer_id, {"type": "thanks", "job": "done"})
        with anyio.fail_after(10):
            await got.wait()
        sender, message = seen[0]
        step(
            f"host received SDK message {message} from the client: {sender == client_node.peer_id}"
        )
        step(f"stopping {n_hosts + 2} nodes")
    step("done: every p2pd stopped, sockets removed")
