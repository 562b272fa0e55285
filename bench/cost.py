"""Cost: node cold start to ready against raw p2pd spawn to ready, memory per idle node
(Python process RSS and p2pd RSS, from /proc/<pid>/status VmRSS), and file descriptors per
connection and per open stream (/proc/<pid>/fd)."""

from __future__ import annotations

import contextlib

import anyio

from fabstir_sidecar.node.manager import DiscoveryManager

from . import refs
from .common import Batch, Ctx, cold_start, host_process, interleaved, raw_p2pd
from .procs import fd_count, progress, rss_kib
from .stats import Figure, Row, Target

MIB = 1024.0


async def run(ctx: Ctx) -> None:
    await _startup(ctx)
    await _memory(ctx)
    await _fds(ctx)


# ------------------------------------------------------------------ start-up


async def _startup(ctx: Ctx) -> None:
    rounds = ctx.pick(2, 10)

    async def raw(_: int) -> list[float]:
        async with raw_p2pd(ctx) as daemon:
            return [daemon.ready_ms]

    batches: dict[str, Batch] = {
        "ours": cold_start(ctx),
        "ours_dht": cold_start(ctx, enable_dht=True, dht_mode="server"),
        "raw": raw,
    }
    progress(f"cost: {rounds} cold starts per method")
    samples = await interleaved(batches, rounds=rounds, per_round=1, warmup=1)
    fig = {k: Figure.of(v, "ms") for k, v in samples.items()}
    spawn = "raw p2pd spawn to ready (DaemonProcess + IDENTIFY)"
    under = Target("<", 300, on="value", text="< 0.3 s")
    for name, ours, what in (
        ("node_start", "ours", "node cold start to ready (DiscoveryManager.create_node, DHT off)"),
        ("node_start_dht", "ours_dht", "node cold start to ready, DHT server mode"),
    ):
        ctx.add(Row(f"cost.{name}", what, fig[ours], fig["raw"], spawn, under))


# ------------------------------------------------------------------- memory


async def _memory(ctx: Ctx) -> None:
    rounds = ctx.pick(1, 3)
    many = ctx.pick(3, 10)
    base: list[float] = []
    one: list[float] = []
    per_node: list[float] = []
    daemon: list[float] = []
    raw_daemon: list[float] = []
    for _ in range(rounds):
        async with host_process(ctx, hosts=0, name="mem-baseline") as proc:
            await anyio.sleep(0.5)
            base.append((rss_kib(proc.pid) or 0) / MIB)
        async with host_process(ctx, hosts=1, role="node", name="mem-one") as proc:
            await anyio.sleep(1.0)
            one.append((rss_kib(proc.pid) or 0) / MIB)
            daemon.append((rss_kib(int(proc.hosts[0]["daemon_pid"])) or 0) / MIB)
        async with host_process(ctx, hosts=many, role="node", name="mem-many") as proc:
            await anyio.sleep(1.0)
            per_node.append(((rss_kib(proc.pid) or 0) / MIB - base[-1]) / many)
        raw_daemon.append(await _raw_daemon_rss(ctx))
    under = Target("<", 60, on="value", text="< 60 MB")
    for name, what, ours, ref, label in (
        (
            "python_idle_node",
            "Python process RSS with one idle node (interpreter + package + node)",
            one,
            base,
            "same process, no node (interpreter + imports)",
        ),
        (
            "python_per_extra_node",
            f"Python RSS per idle node, {many} nodes in one process, above the baseline",
            per_node,
            one,
            "one-node process",
        ),
    ):
        mib = Figure.of(ours, "MiB"), Figure.of(ref, "MiB")
        ctx.add(Row(f"mem.{name}", what, *mib, label, under))
    ctx.add(
        Row(
            "mem.p2pd_idle",
            "p2pd RSS of an idle node",
            Figure.of(daemon, "MiB"),
            Figure.of(raw_daemon, "MiB"),
            "raw p2pd, no handlers, idle",
        )
    )


async def _raw_daemon_rss(ctx: Ctx) -> float:
    async with raw_p2pd(ctx) as daemon:
        pid = daemon.proc.pid
        assert pid is not None
        await anyio.sleep(1.0)
        return (rss_kib(pid) or 0) / MIB


# --------------------------------------------------------------------- fds


def _fd(pid: int | None = None) -> int:
    count = fd_count(pid)
    if count is None:
        raise RuntimeError(f"cannot count the fds of {pid or 'this process'}")
    return count


async def _fds(ctx: Ctx) -> None:
    peers = ctx.pick(3, 10)
    streams = ctx.pick(5, 50)
    async with (
        host_process(ctx, hosts=peers, role="node", raw=True, name="fd-peers") as fleet,
        DiscoveryManager(**ctx.node_options(max_connections=4 * peers)) as node,
    ):
        ctx.track(node)
        daemon_pid = refs.node_daemon_pid(node)
        assert daemon_pid is not None
        await anyio.sleep(0.2)
        py0, d0 = _fd(), _fd(daemon_pid)
        for host in fleet.hosts:
            await node.connect_to_peer(host["addrs"][0])
        await anyio.sleep(0.2)
        py1, d1 = _fd(), _fd(daemon_pid)
        opened = []
        try:
            for _ in range(streams):
                opened.append(await node.control.open_stream(fleet.peer_id, [refs.ECHO]))
            await anyio.sleep(0.2)
            py2, d2 = _fd(), _fd(daemon_pid)
        finally:
            for stream in opened:
                await stream.aclose()
        assert fleet.tcp_port is not None
        async with contextlib.AsyncExitStack() as stack:
            t0 = _fd()
            for _ in range(streams):
                sock, _reader = await refs.open_tcp(fleet.tcp_port, b"E")
                stack.push_async_callback(sock.aclose)
            t1 = _fd()
    tcp_per = (t1 - t0) / streams
    tcp_fig = Figure.of([tcp_per], "fds")
    per = {  # row: (what is opened, how many (text, number), the extra fds of Python, of p2pd)
        "connection": ("libp2p connection", f"{peers} peers", peers, py1 - py0, d1 - d0),
        "stream": (
            "open stream",
            f"{streams} streams on one connection",
            streams,
            py2 - py1,
            d2 - d1,
        ),
    }
    for kind, (what, detail, count, py, d) in per.items():
        ctx.add(
            Row(
                f"fd.per_{kind}",
                f"fds per {what}, Python + p2pd ({detail})",
                Figure.of([(py + d) / count], "fds"),
                tcp_fig,
                "plain TCP connection",
                extra={"python": py / count, "p2pd": d / count},
            )
        )
