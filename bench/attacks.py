"""Attacks on a host's admission, and an honest peer's job latency meanwhile (bench/admission).

Each case starts its own host process, measures an honest client's sequential echo jobs
idle, then during the attack (p50; target <= 3x idle), and checks that every honest job
succeeded. Attackers are bare p2pd daemons driven through DaemonControl.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Coroutine
from typing import Any

import anyio

from fabstir_sidecar.client import FabstirClient, RetryConfig
from fabstir_sidecar.core.errors import FabstirError
from fabstir_sidecar.daemon.control import DaemonControl
from fabstir_sidecar.daemon.stream import DaemonStream
from fabstir_sidecar.protocols import ids
from fabstir_sidecar.wire.framing import encode_json_frame
from fabstir_sidecar.wire.messages import JobRequest

from .common import Ctx, HostProc, host_process, raw_p2pd
from .hostproc import MODEL
from .procs import progress
from .rtt import PROMPT
from .stats import Figure, Row, Target

Attack = Callable[
    [Ctx, HostProc, list[DaemonControl], contextlib.AsyncExitStack], Coroutine[Any, Any, None]
]


async def _attacker(ctx: Ctx, stack: contextlib.AsyncExitStack, host: HostProc) -> DaemonControl:
    raw = await stack.enter_async_context(raw_p2pd(ctx))
    control = DaemonControl(f"/unix{raw.proc.spec.control_socket}", request_timeout=10.0)
    addrs = [a.rsplit("/p2p/", 1)[0] for a in host.hosts[0]["addrs"]]
    await control.connect(host.peer_id, addrs, timeout=10.0)
    return control


async def _keep(stack: contextlib.AsyncExitStack, stream: DaemonStream) -> None:
    stack.push_async_callback(stream.aclose)


async def flood(
    ctx: Ctx, host: HostProc, controls: list[DaemonControl], stack: contextlib.AsyncExitStack
) -> None:
    """2,000 streams from one peer, never read: half silent, half with a job request."""
    control = controls[0]
    request = encode_json_frame(JobRequest(job_id="flood", model=MODEL, prompt=PROMPT).to_json())
    limiter = anyio.CapacityLimiter(64)
    failed: list[str] = []

    async def one(i: int) -> None:
        async with limiter:
            try:
                stream = await control.open_stream(host.peer_id, [ids.JOB], timeout=10.0)
                await _keep(stack, stream)
                if i % 2:
                    await stream.send(request)
            except FabstirError as exc:
                failed.append(f"{type(exc).__name__}: {exc}")

    async with anyio.create_task_group() as tg:
        for i in range(ctx.pick(400, 2000)):
            tg.start_soon(one, i)
    progress(f"flood: {len(failed)} of the streams failed to open: {failed[:2]}")


async def slowloris(
    ctx: Ctx, host: HostProc, controls: list[DaemonControl], stack: contextlib.AsyncExitStack
) -> None:
    """10 identities x 30 streams that send nothing."""
    for control in controls:
        for _ in range(30):
            with contextlib.suppress(FabstirError):
                await _keep(stack, await control.open_stream(host.peer_id, [ids.JOB], timeout=10))


async def hog(
    ctx: Ctx, host: HostProc, controls: list[DaemonControl], stack: contextlib.AsyncExitStack
) -> None:
    """4 streamed jobs asking for the most output, never read (host max_jobs 4)."""
    control = controls[0]
    prompt = " ".join(["a"] * 40_000)
    for i in range(4):
        stream = await control.open_stream(host.peer_id, [ids.JOB], timeout=10)
        await _keep(stack, stream)
        job = JobRequest(job_id=f"hog-{i}", model=MODEL, prompt=prompt, max_tokens=1_000_000)
        await stream.send(encode_json_frame({**job.to_json(), "stream": True}))


CASES: dict[str, tuple[Attack, int, int]] = {  # attack, host max_jobs, attacker identities
    "flood": (flood, 8, 1),
    "slowloris": (slowloris, 8, 10),
    "hog": (hog, 4, 1),
}


async def _honest(
    client: FabstirClient, peer: str, seconds: float, failures: list[str]
) -> list[float]:
    samples: list[float] = []
    stop_at = time.perf_counter() + seconds
    while time.perf_counter() < stop_at:
        t0 = time.perf_counter()
        try:
            await client.run_job(peer, MODEL, PROMPT)
            samples.append((time.perf_counter() - t0) * 1000)
        except FabstirError as exc:
            failures.append(f"{type(exc).__name__}: {exc}")
    return samples


async def run_attacks(ctx: Ctx) -> None:
    seconds = ctx.pick(1.0, 4.0)
    for name, (attack, max_jobs, identities) in CASES.items():
        async with (
            host_process(ctx, name=f"adm-{name}", max_jobs=max_jobs) as host,
            contextlib.AsyncExitStack() as stack,
        ):
            node = await stack.enter_async_context(ctx.node())
            ctx.track(node)
            await node.connect_to_peer(host.addr)
            honest = FabstirClient(node, retry=RetryConfig(), job_timeout=30.0)
            n = ctx.pick(min(identities, 3), identities)
            controls = [await _attacker(ctx, stack, host) for _ in range(n)]
            failures: list[str] = []
            await _honest(honest, host.peer_id, 0.3, failures)
            idle = await _honest(honest, host.peer_id, seconds, failures)
            t0 = time.perf_counter()
            async with contextlib.AsyncExitStack() as attack_stack:
                async with anyio.create_task_group() as tg:
                    tg.start_soon(attack, ctx, host, controls, attack_stack)
                    during = await _honest(honest, host.peer_id, seconds, failures)
                during += await _honest(honest, host.peer_id, seconds, failures)
            await anyio.sleep(1.0)  # the host sees the attacker's streams close
            counters = (await host.stats())[0].get("admission", {})
            attack_s = time.perf_counter() - t0
        idle_fig = Figure.of(idle or [math.nan], "ms", tail=True)
        during_fig = Figure.of(during or [math.nan], "ms", tail=True)
        progress(
            f"attack {name}: honest p50 idle {idle_fig.median:.1f} ms, during "
            f"{during_fig.median:.1f} ms, {len(failures)} failures, host {counters}"
        )
        extra = {
            "failures": len(failures),
            "samples": failures[:5],
            "host": counters,
            "honest_jobs": len(during),
            "attack_s": round(attack_s, 1),
        }
        ctx.add(
            Row(
                f"admission.attack.{name}.honest_p50",
                f"honest job latency during the {name} attack",
                during_fig,
                idle_fig,
                "idle",
                Target("<=", 3.0, text="p50 <= 3x idle"),
                extra=extra,
            )
        )
        ctx.add(
            Row(
                f"admission.attack.{name}.honest_failures",
                f"honest jobs that failed during the {name} attack",
                Figure.of([float(len(failures))], "jobs"),
                target=Target("<=", 0, on="value", text="all succeed"),
                extra=extra,
            )
        )
