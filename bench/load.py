"""Host under load: echo jobs/s one host (its own process) sustains from 1, 10 and 100
concurrent requesters, p50/p99 latency and errors, against raw daemon echo at the same
concurrency. Requesters are tasks spread over a few client nodes (25 per node); the same load
from one client node, side by side with the spread one, is ``bench/admission.py``'s."""

from __future__ import annotations

import contextlib
import math
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

import anyio

from fabstir_sidecar.client import FabstirClient, RetryConfig
from fabstir_sidecar.node.manager import DiscoveryManager
from fabstir_sidecar.wire.framing import encode_json_frame
from fabstir_sidecar.wire.messages import JobRequest

from . import refs
from .common import Ctx, HostProc, host_process
from .hostproc import MODEL
from .procs import progress, rss_kib
from .rtt import PROMPT
from .stats import Figure, Row, Target

PER_NODE = 25


@dataclass
class LoadResult:
    jobs_per_s: list[float] = field(default_factory=list)
    latency_ms: list[float] = field(default_factory=list)
    errors: int = 0
    error_kinds: dict[str, int] = field(default_factory=dict)
    error_samples: list[str] = field(default_factory=list)  # the first few messages, for docs


async def drive(
    ops: list[Callable[[], Awaitable[object]]], duration: float, into: LoadResult
) -> None:
    """One task per requester, each issuing requests back to back until ``duration``."""
    done = 0
    stop_at = time.perf_counter() + duration

    async def requester(op: Callable[[], Awaitable[object]]) -> None:
        nonlocal done
        while time.perf_counter() < stop_at:
            t0 = time.perf_counter()
            try:
                await op()
            except Exception as exc:
                into.errors += 1
                kind = type(exc).__name__
                into.error_kinds[kind] = into.error_kinds.get(kind, 0) + 1
                if len(into.error_samples) < 5:
                    into.error_samples.append(f"{kind}: {exc}")
                await anyio.sleep(0.001)
                continue
            into.latency_ms.append((time.perf_counter() - t0) * 1000)
            done += 1

    t0 = time.perf_counter()
    async with anyio.create_task_group() as tg:
        for op in ops:
            tg.start_soon(requester, op)
    into.jobs_per_s.append(done / (time.perf_counter() - t0))


async def run(ctx: Ctx) -> None:
    levels = ctx.pick([1, 10, 40], [1, 10, 100])
    duration = ctx.pick(0.6, 3.0)
    rounds = ctx.pick(1, 3)
    n_nodes = math.ceil(max(levels) / PER_NODE)
    series: dict[str, list[float]] = {
        k: []
        for k in (
            "concurrency",
            "ours_p50",
            "ours_p99",
            "raw_p50",
            "raw_p99",
            "ours_jobs_per_s",
            "raw_jobs_per_s",
        )
    }
    async with host_process(ctx, raw=True, name="load-host", profile_as="load") as host:
        idle = _mem(host)
        async with contextlib.AsyncExitStack() as stack:
            nodes: list[DiscoveryManager] = []
            for _ in range(n_nodes):
                node = await stack.enter_async_context(ctx.node())
                ctx.track(node)
                await node.connect_to_peer(host.addr)
                nodes.append(node)
            clients = [FabstirClient(n, retry=RetryConfig.none()) for n in nodes]
            raws = [refs.RawDaemonClient(refs.node_control_socket(n)) for n in nodes]
            peer = host.peer_id
            job_frame = encode_json_frame(
                JobRequest(job_id=uuid.uuid4().hex, model=MODEL, prompt=PROMPT).to_json()
            )
            payload = refs.frame(len(job_frame) - 4)

            def ours_op(i: int) -> Callable[[], Awaitable[object]]:
                client = clients[i // PER_NODE]
                return lambda: client.run_job(peer, MODEL, PROMPT)

            def raw_op(i: int) -> Callable[[], Awaitable[object]]:
                raw = raws[i // PER_NODE]
                return lambda: raw.echo_once(peer, payload)

            await drive([ours_op(0)], 0.2, LoadResult())  # warm up both paths
            await drive([raw_op(0)], 0.2, LoadResult())
            loaded_py: list[int] = []
            loaded_daemon: list[int] = []
            for level in levels:
                ours, raw = LoadResult(), LoadResult()
                for r in range(rounds):
                    order = [("ours", ours), ("raw", raw)]
                    for kind, into in order if r % 2 == 0 else order[::-1]:
                        make = ours_op if kind == "ours" else raw_op
                        ops = [make(i) for i in range(level)]
                        if kind == "ours" and level == max(levels):
                            async with _sample_memory(host, loaded_py, loaded_daemon):
                                await drive(ops, duration, into)
                        else:
                            await drive(ops, duration, into)
                progress(
                    f"load c={level}: ours {max(ours.jobs_per_s):.0f} jobs/s "
                    f"(errors {ours.errors}), raw {max(raw.jobs_per_s):.0f}/s"
                )
                _rows(ctx, level, ours, raw)
                series["concurrency"].append(level)
                for name, res in (("ours", ours), ("raw", raw)):
                    lat = Figure.of(res.latency_ms or [math.nan], "ms", tail=True)
                    series[f"{name}_p50"].append(lat.median)
                    series[f"{name}_p99"].append(lat.p99 or math.nan)
                    series[f"{name}_jobs_per_s"].append(Figure.of(res.jobs_per_s, "").median)
            stats = await host.stats()
    ctx.series["load"] = series
    host_errors = sum(h["errors"] + h["rejected"] for h in stats)
    if host_errors:
        progress(f"load: the host reported {host_errors} rejected/failed jobs")
    _memory_rows(ctx, idle, loaded_py, loaded_daemon, max(levels))


def _rows(ctx: Ctx, level: int, ours: LoadResult, raw: LoadResult) -> None:
    top = level == 100
    tput = Figure.of(ours.jobs_per_s, "jobs/s")
    ref_tput = Figure.of(raw.jobs_per_s, "jobs/s")
    lat = Figure.of(ours.latency_ms or [math.nan], "ms", tail=True)
    ref_lat = Figure.of(raw.latency_ms or [math.nan], "ms", tail=True)
    label = f"raw daemon echo, {level} requesters"
    ctx.add(
        Row(
            f"load.c{level}.jobs_per_s",
            f"echo jobs/s, one host, {level} concurrent requesters",
            tput,
            ref_tput,
            label,
            Target(">=", 1000, on="value", text=">= 1,000 jobs/s") if top else None,
            better="higher",
            extra={"errors": ours.errors, "error_kinds": ours.error_kinds},
        )
    )
    ctx.add(
        Row(
            f"load.c{level}.latency",
            f"job latency with {level} concurrent requesters (target on p99)",
            lat,
            ref_lat,
            label,
            Target("<", 50, on="value", text="p99 < 50 ms") if top else None,
            stat="p99",
        )
    )
    errors = Figure.of([float(ours.errors)], "errors")
    ctx.add(
        Row(
            f"load.c{level}.errors",
            f"failed jobs with {level} concurrent requesters",
            errors,
            Figure.of([float(raw.errors)], "errors"),
            label,
            Target("<=", 0, on="value", text="no errors"),
            extra={
                "error_kinds": ours.error_kinds,
                "error_samples": ours.error_samples,
                "raw_error_kinds": raw.error_kinds,
                "raw_error_samples": raw.error_samples,
            },
        )
    )


def _mem(host: HostProc) -> tuple[int, int]:
    return rss_kib(host.pid) or 0, rss_kib(int(host.hosts[0]["daemon_pid"])) or 0


@contextlib.asynccontextmanager
async def _sample_memory(host: HostProc, py: list[int], daemon: list[int]) -> AsyncIterator[None]:
    async def sample() -> None:
        while True:
            p, d = _mem(host)
            py.append(p)
            daemon.append(d)
            await anyio.sleep(0.1)

    async with anyio.create_task_group() as tg:
        tg.start_soon(sample)
        yield
        tg.cancel_scope.cancel()


def _memory_rows(
    ctx: Ctx, idle: tuple[int, int], py: list[int], daemon: list[int], level: int
) -> None:
    if not py:
        return
    mib = 1024.0
    ctx.add(
        Row(
            "mem.host_python_under_load",
            f"host Python process RSS during {level} concurrent requesters",
            Figure.of([x / mib for x in py], "MiB"),
            Figure.of([idle[0] / mib], "MiB"),
            "same host, idle",
        )
    )
    ctx.add(
        Row(
            "mem.host_p2pd_under_load",
            f"host p2pd RSS during {level} concurrent requesters",
            Figure.of([x / mib for x in daemon], "MiB"),
            Figure.of([idle[1] / mib], "MiB"),
            "same p2pd, idle",
        )
    )
