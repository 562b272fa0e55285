"""Admission under load and under attack (issue 10), the host in its own process.

* ``admission.one|spread.cN``: echo jobs/s and latency from N concurrent requesters on ONE
  client node, and spread over 4 nodes, side by side with raw daemon echo at the same
  concurrency (host ``max_jobs`` 1000). Errors are final outcomes (the client's default
  retries); the host's own counters (busy answers, resets) go into ``extra``.
* ``admission.overload``: 10 client nodes x 100 requesters against ``max_jobs`` 8, each
  requester honouring ``retry_after_ms``: every request must be answered (result or busy)
  within its deadline; the host's status p99 during the overload vs idle; host RSS.
* ``admission.attack.*``: a flood of 2,000 unread streams from one peer, slowloris from 10
  identities x 30 streams, 4 never-read streamed jobs (``max_jobs`` 4): an honest peer's job
  latency (p50) during each, vs idle.
"""

from __future__ import annotations

import contextlib
import math
import random
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable

import anyio

from fabstir_sidecar.client import FabstirClient, RetryConfig
from fabstir_sidecar.core.errors import FabstirError, HostBusyError, RetryExhaustedError
from fabstir_sidecar.node.manager import DiscoveryManager
from fabstir_sidecar.protocols import ids
from fabstir_sidecar.wire.framing import encode_json_frame
from fabstir_sidecar.wire.messages import JobRequest

from . import attacks, refs
from .common import Ctx, HostProc, host_process
from .hostproc import MODEL
from .load import LoadResult, drive
from .procs import LineProcess, progress, rss_kib
from .rtt import PROMPT
from .stats import Figure, Row, Target

SPREAD = 4


def _host_rss_parts(host: HostProc) -> tuple[int, int]:
    """KiB of the host's Python process and of its p2pd."""
    return rss_kib(host.pid) or 0, rss_kib(int(host.hosts[0]["daemon_pid"])) or 0


def _host_rss(host: HostProc) -> int:
    return sum(_host_rss_parts(host))


async def _nodes(
    ctx: Ctx, stack: contextlib.AsyncExitStack, n: int, addr: str
) -> list[DiscoveryManager]:
    nodes = []
    for _ in range(n):
        node = await stack.enter_async_context(ctx.node())
        ctx.track(node)
        await node.connect_to_peer(addr)
        nodes.append(node)
    return nodes


async def _admission(host: HostProc) -> dict[str, dict[str, int]]:
    return dict((await host.stats())[0].get("admission", {}))


def _delta(after: dict[str, dict[str, int]], before: dict[str, dict[str, int]]) -> dict[str, int]:
    job = ids.JOB
    return {k: after.get(k, {}).get(job, 0) - before.get(k, {}).get(job, 0) for k in after}


# ------------------------------------------------------------------------ load


async def run_load(ctx: Ctx) -> None:
    levels = ctx.pick([1, 10, 100], [1, 10, 100, 1000])
    duration = ctx.pick(0.6, 3.0)
    rounds = ctx.pick(1, 2)
    async with (
        host_process(
            ctx, raw=True, name="adm-host", max_jobs=1000, profile_as="admission-load"
        ) as host,
        contextlib.AsyncExitStack() as stack,
    ):
        nodes = await _nodes(ctx, stack, SPREAD, host.addr)
        clients = [FabstirClient(n) for n in nodes]
        raw = refs.RawDaemonClient(refs.node_control_socket(nodes[0]))
        frame = encode_json_frame(
            JobRequest(job_id=uuid.uuid4().hex, model=MODEL, prompt=PROMPT).to_json()
        )
        payload = refs.frame(len(frame) - 4)
        peer = host.peer_id

        def job(i: int, spread: bool) -> Callable[[], Awaitable[object]]:
            client = clients[i % SPREAD] if spread else clients[0]
            return lambda: client.run_job(peer, MODEL, PROMPT)

        def echo() -> Awaitable[object]:
            return raw.echo_once(peer, payload)

        for i in range(SPREAD):  # warm every client's path once
            await drive([job(i, True)], 0.2, LoadResult())
        await drive([echo], 0.2, LoadResult())
        for level in levels:
            res = {"one": LoadResult(), "spread": LoadResult(), "raw": LoadResult()}
            counters: dict[str, dict[str, int]] = {"one": {}, "spread": {}}
            for r in range(rounds):
                order = ["one", "spread", "raw"]
                for kind in order[r % 3 :] + order[: r % 3]:
                    before = await _admission(host)
                    if kind == "raw":
                        ops = [echo for _ in range(level)]
                    else:
                        ops = [job(i, kind == "spread") for i in range(level)]
                    await drive(ops, duration, res[kind])
                    if kind != "raw":
                        delta = _delta(await _admission(host), before)
                        for k, v in delta.items():
                            counters[kind][k] = counters[kind].get(k, 0) + v
            progress(
                f"admission c={level}: one {max(res['one'].jobs_per_s):.0f}/s "
                f"(errors {res['one'].errors}, {counters['one']}), spread "
                f"{max(res['spread'].jobs_per_s):.0f}/s, raw {max(res['raw'].jobs_per_s):.0f}/s"
            )
            _load_rows(ctx, level, res, counters)


def _load_rows(
    ctx: Ctx, level: int, res: dict[str, LoadResult], counters: dict[str, dict[str, int]]
) -> None:
    top = level == 100
    one, spread, raw = res["one"], res["spread"], res["raw"]
    for kind, fig_of in (("one", one), ("spread", spread)):
        where = "one client node" if kind == "one" else f"{SPREAD} client nodes"
        extra = {
            "errors": fig_of.errors,
            "error_kinds": fig_of.error_kinds,
            "error_samples": fig_of.error_samples,
            "host": counters[kind],
        }
        ctx.add(
            Row(
                f"admission.{kind}.c{level}.jobs_per_s",
                f"echo jobs/s, {level} concurrent requesters on {where}",
                Figure.of(fig_of.jobs_per_s, "jobs/s"),
                Figure.of(raw.jobs_per_s, "jobs/s"),
                f"raw daemon echo, {level} requesters",
                Target(">=", 1000, on="value", text=">= 1,000 jobs/s")
                if top and kind == "one"
                else None,
                better="higher",
                extra=extra,
            )
        )
        ctx.add(
            Row(
                f"admission.{kind}.c{level}.latency",
                f"job latency, {level} requesters on {where} (p99)",
                Figure.of(fig_of.latency_ms or [math.nan], "ms", tail=True),
                Figure.of(raw.latency_ms or [math.nan], "ms", tail=True),
                f"raw daemon echo, {level} requesters",
                stat="p99",
            )
        )
        ctx.add(
            Row(
                f"admission.{kind}.c{level}.errors",
                f"jobs without a result, {level} requesters on {where}",
                Figure.of([float(fig_of.errors)], "errors"),
                target=Target("<=", 0, on="value", text="no errors"),
                extra=extra,
            )
        )
    ctx.add(
        Row(
            f"admission.one_vs_spread.c{level}",
            f"jobs/s from one client node / from {SPREAD} nodes, {level} requesters",
            Figure.of(one.jobs_per_s, "jobs/s"),
            Figure.of(spread.jobs_per_s, "jobs/s"),
            f"{SPREAD} client nodes",
            Target(">=", 0.9, text="one node >= 0.9x four") if top else None,
            better="higher",
        )
    )


# -------------------------------------------------------------------- overload


@contextlib.asynccontextmanager
async def _prober(ctx: Ctx, addr: str) -> AsyncIterator[LineProcess]:
    """``bench.status_probe`` in its own process (its latency is the host's, not ours)."""
    argv = [sys.executable, "-m", "bench.status_probe", "--addr", addr, "--p2pd", str(ctx.p2pd)]
    proc = await LineProcess.start(argv, name="status-probe")
    ctx.child_pids.add(proc.pid)
    try:
        ready = await proc.read_json(timeout=60)
        if ready.get("event") != "ready":
            raise RuntimeError(f"status probe failed to start: {ready}")
        yield proc
    finally:
        await proc.aclose()


async def _probe(prober: LineProcess, seconds: float) -> list[float]:
    answer = await prober.request(f"probe {seconds}", timeout=seconds + 60)
    return [float(x) for x in answer["ms"]]


async def run_overload(ctx: Ctx) -> None:
    for paced in (False, True):
        await _overload(ctx, paced)


async def _overload(ctx: Ctx, paced: bool) -> None:
    """Unpaced: requesters send at once and honour ``retry_after_ms`` themselves; paced:
    the client's default (local window per host, busy answers retried)."""
    n_nodes, per_node = ctx.pick((3, 20), (10, 100))
    duration = ctx.pick(1.5, 6.0)
    deadline = 10.0
    kind_name = "paced" if paced else "unpaced"
    async with (
        host_process(
            ctx,
            name=f"adm-overload-{kind_name}",
            max_jobs=8,
            profile_as=f"admission-overload-{kind_name}",
        ) as host,
        _prober(ctx, host.addr) as prober,
        contextlib.AsyncExitStack() as stack,
    ):
        nodes = await _nodes(ctx, stack, n_nodes, host.addr)
        peer = host.peer_id
        idle_rss = _host_rss(host)
        idle = await _probe(prober, 2.0)
        retry = RetryConfig(max_total_s=deadline) if paced else RetryConfig.none()
        clients = [FabstirClient(n, retry=retry, pacing=paced, job_timeout=deadline) for n in nodes]
        outcome = {"result": 0, "busy": 0, "late": 0, "other": 0}
        others: list[str] = []
        peak_rss = idle_rss
        idle_parts = peak_parts = _host_rss_parts(host)
        stop_at = time.perf_counter() + duration

        async def requester(client: FabstirClient) -> None:
            while time.perf_counter() < stop_at:
                t0 = time.perf_counter()
                wait = 0.0
                try:
                    await client.run_job(peer, MODEL, PROMPT)
                    kind = "result"
                except RetryExhaustedError as exc:
                    last = exc.failures[-1]
                    kind = "busy" if isinstance(last, HostBusyError) else "other"
                    if isinstance(last, HostBusyError):
                        wait = (last.retry_after or 0.05) * random.uniform(1.0, 1.25)
                    else:
                        others.append(str(last))
                except FabstirError as exc:
                    kind = "other"
                    others.append(f"{type(exc).__name__}: {exc}")
                if time.perf_counter() - t0 > deadline:
                    kind = "late"
                outcome[kind] += 1
                await anyio.sleep(wait)

        async def rss_sampler() -> None:
            nonlocal peak_rss, peak_parts
            while True:
                parts = _host_rss_parts(host)
                if sum(parts) > peak_rss:
                    peak_rss, peak_parts = sum(parts), parts
                await anyio.sleep(0.1)

        async with anyio.create_task_group() as tg:
            tg.start_soon(rss_sampler)
            for client in clients:
                for _ in range(per_node):
                    tg.start_soon(requester, client)
            during = await _probe(prober, duration)
            await anyio.sleep(max(0.0, stop_at - time.perf_counter()))
            tg.cancel_scope.cancel()
        await anyio.sleep(1.0)
        after = await _probe(prober, 2.0)
        after_rss = _host_rss(host)
        counters = (await host.stats())[0].get("admission", {})
    counters = {**counters, "rss_kib_python_p2pd": {"idle": idle_parts, "peak": peak_parts}}
    _overload_rows(
        ctx,
        kind_name,
        outcome,
        others,
        counters,
        n_nodes * per_node,
        (idle, during, after),
        (idle_rss, peak_rss, after_rss),
    )


def _overload_rows(
    ctx: Ctx,
    kind: str,
    outcome: dict[str, int],
    others: list[str],
    counters: dict[str, object],
    requesters: int,
    status: tuple[list[float], list[float], list[float]],
    rss: tuple[int, int, int],
) -> None:
    idle, during, after = (Figure.of(x or [math.nan], "ms", tail=True) for x in status)
    idle_rss, peak_rss, after_rss = rss
    progress(
        f"overload {kind}: {outcome}; status p99 idle {idle.p99} during {during.p99} after "
        f"{after.p99} ms; rss {idle_rss} -> {peak_rss} -> {after_rss} KiB; host {counters}"
    )
    name = f"admission.overload.{kind}"
    extra = {
        "outcomes": outcome,
        "samples": others[:5],
        "host": counters,
        "requesters": requesters,
        "max_jobs": 8,
    }
    unanswered = outcome["late"] + outcome["other"]
    ctx.add(
        Row(
            f"{name}.unanswered",
            f"overload ({kind}): requests without a result or busy answer in time",
            Figure.of([float(unanswered)], "requests"),
            target=Target("<=", 0, on="value", text="every request answered"),
            extra=extra,
        )
    )
    ctx.add(
        Row(
            f"{name}.status",
            f"host status latency during the overload ({kind}, p99)",
            during,
            idle,
            "idle",
            stat="p99",
            extra={"after_p99": after.p99, "after_median": after.median},
        )
    )
    ratio = (during.p99 or math.nan) / (idle.p99 or math.nan)
    ctx.add(
        Row(
            f"{name}.status_p99_ratio",
            f"status p99 during the overload / idle ({kind})",
            Figure.of([ratio], "x"),
            target=Target("<=", 5.0, on="value", text="<= 5x idle p99"),
        )
    )
    ctx.add(
        Row(
            f"{name}.rss",
            f"host RSS (python + p2pd), peak during the overload ({kind})",
            Figure.of([float(peak_rss)], "KiB"),
            Figure.of([float(idle_rss)], "KiB"),
            "idle",
            Target("<=", 1.5, text="<= 1.5x idle"),
            extra={"after_kib": after_rss},
        )
    )


async def run(ctx: Ctx) -> None:
    await run_load(ctx)
    await run_overload(ctx)
    await attacks.run_attacks(ctx)
