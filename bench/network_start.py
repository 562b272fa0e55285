"""Test networks (``fabstir_sidecar.testing``): one bootstrap node and three hosts from
nothing to ready (every host connected to the bootstrap node and serving), and back to
nothing, against one node's cold start measured in the same run."""

from __future__ import annotations

import time

from fabstir_sidecar.testing import HostSpec, NetworkFactory

from .common import Batch, Ctx, cold_start, interleaved
from .procs import progress
from .stats import Figure, Row, Target

HOSTS = 3


async def run(ctx: Ctx) -> None:
    rounds = ctx.pick(2, 10)
    stops: list[float] = []

    async def network(_: int) -> list[float]:
        async with NetworkFactory(p2pd_path=str(ctx.p2pd)) as factory:
            t0 = time.perf_counter()
            net = await factory(hosts=[HostSpec(models=["m"]) for _ in range(HOSTS)])
            ready = (time.perf_counter() - t0) * 1000
            ctx.daemon_pids.update(factory.daemon_pids())
            t1 = time.perf_counter()
            await net.aclose()
            stops.append((time.perf_counter() - t1) * 1000)
        return [ready]

    batches: dict[str, Batch] = {"network": network, "node": cold_start(ctx)}
    progress(f"network_start: {rounds} starts of 1 bootstrap + {HOSTS} hosts, and of one node")
    samples = await interleaved(batches, rounds=rounds, per_round=1, warmup=1)
    node = Figure.of(samples["node"], "ms")
    ctx.add(
        Row(
            "net.start_1b3h",
            f"test network of 1 bootstrap node + {HOSTS} hosts, start to ready "
            "(fabstir_network / start_network)",
            Figure.of(samples["network"], "ms"),
            node,
            "one node cold start (DiscoveryManager.create_node)",
            Target("<", 1500, on="value", text="< 1.5 s"),
        )
    )
    ctx.add(
        Row(
            "net.stop_1b3h",
            f"the same network stopped (all {HOSTS + 1} nodes and daemons)",
            Figure.of(stops[-rounds:], "ms"),
            node,
            "one node cold start (DiscoveryManager.create_node)",
        )
    )
