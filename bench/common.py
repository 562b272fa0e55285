"""What every benchmark case shares: the run context, node factories, the host process, a
bare p2pd, interleaved measurement (ours and its reference alternate, so noise hits both
alike)."""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import anyio

from fabstir_sidecar.daemon.control import DaemonControl
from fabstir_sidecar.daemon.process import DaemonProcess, DaemonSpec, DhtMode
from fabstir_sidecar.daemon.runtime_dir import RuntimeDir
from fabstir_sidecar.node.manager import DiscoveryManager

from .procs import LineProcess, progress
from .stats import Row

T = TypeVar("T")

LOOPBACK = "/ip4/127.0.0.1/tcp/0"

Batch = Callable[[int], Awaitable[list[float]]]


@dataclass
class Ctx:
    quick: bool
    p2pd: Path
    pylibp2p_python: str | None = None
    pylibp2p_reason: str = ""
    profile_dir: Path | None = None
    max_hosts: int = 100
    rows: list[Row] = field(default_factory=list)
    skipped: list[dict[str, str]] = field(default_factory=list)
    series: dict[str, Any] = field(default_factory=dict)
    daemon_pids: set[int] = field(default_factory=set)
    child_pids: set[int] = field(default_factory=set)
    timings: dict[str, float] = field(default_factory=dict)

    def pick(self, quick: T, full: T) -> T:
        return quick if self.quick else full

    def add(self, row: Row) -> Row:
        self.rows.append(row)
        return row

    def skip(self, name: str, reason: str) -> None:
        progress(f"skipped {name}: {reason}")
        self.skipped.append({"name": name, "reason": reason})

    def node_options(self, **options: Any) -> dict[str, Any]:
        values: dict[str, Any] = {
            "p2pd_path": str(self.p2pd),
            "enable_mdns": False,
            "enable_dht": False,
            "bootstrap": (),
            "connection_timeout": 10.0,
            "listen": (LOOPBACK,),
        }
        values.update(options)
        return values

    def node(self, **options: Any) -> DiscoveryManager:
        """A loopback node: mDNS off, DHT off unless asked (``dht_mode="server"``)."""
        return DiscoveryManager(**self.node_options(**options))

    def track(self, node: DiscoveryManager) -> DiscoveryManager:
        pid = node._daemon.pid if node._daemon is not None else None
        if pid:
            self.daemon_pids.add(int(pid))
        return node


@dataclass
class HostProc:
    """A running ``bench.hostproc``: its hosts (peer id, addrs, daemon pid) and TCP port."""

    proc: LineProcess
    hosts: list[dict[str, Any]]
    tcp_port: int | None
    elapsed_s: float

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def peer_id(self) -> str:
        return str(self.hosts[0]["peer_id"])

    @property
    def addr(self) -> str:
        return str(self.hosts[0]["addrs"][0])

    async def stats(self) -> list[dict[str, Any]]:
        answer = await self.proc.request("stats", timeout=10)
        return list(answer["hosts"])


def _py_spy() -> str | None:
    found = shutil.which("py-spy")
    if found:
        return found
    local = Path(sys.executable).parent / "py-spy"
    return str(local) if local.exists() else None


def _start_py_spy(pid: int, out: Path) -> subprocess.Popen[bytes] | None:
    """Sample ``pid`` until it exits (collapsed stacks: one line per stack, then a count)."""
    tool = _py_spy()
    if tool is None:
        progress("py-spy not installed: no host-side profile")
        return None
    argv = [tool, "record", "--pid", str(pid), "--format", "raw", "--rate", "250"]
    argv += ["--output", str(out), "--nonblocking"]
    return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


@contextlib.asynccontextmanager
async def host_process(
    ctx: Ctx,
    *,
    hosts: int = 1,
    raw: bool = False,
    role: str = "host",
    dht: str = "off",
    bootstrap: tuple[str, ...] = (),
    wait_advertised: bool = False,
    batch: int = 8,
    max_connections: int = 10,
    name: str = "hostproc",
    profile_as: str | None = None,
    max_jobs: int | None = None,
) -> AsyncIterator[HostProc]:
    argv = [
        sys.executable,
        "-m",
        "bench.hostproc",
        "--hosts",
        str(hosts),
        "--role",
        role,
        "--dht",
        dht,
        "--batch",
        str(batch),
        "--max-connections",
        str(max_connections),
        "--p2pd",
        str(ctx.p2pd),
    ]
    for address in bootstrap:
        argv += ["--bootstrap", address]
    if raw:
        argv.append("--raw")
    if max_jobs is not None:
        argv += ["--max-jobs", str(max_jobs)]
    if wait_advertised:
        argv.append("--wait-advertised")
    proc = await LineProcess.start(argv, name=name)
    ctx.child_pids.add(proc.pid)
    spy: subprocess.Popen[bytes] | None = None
    try:
        ready = await proc.read_json(timeout=60 + 3 * hosts)
        for host in ready.get("hosts", []):
            if host.get("daemon_pid"):
                ctx.daemon_pids.add(int(host["daemon_pid"]))
        if ready.get("event") != "ready":
            raise RuntimeError(f"{name} failed to start: {ready.get('errors')}")
        if ctx.profile_dir is not None and profile_as:
            spy = _start_py_spy(proc.pid, ctx.profile_dir / f"{profile_as}-host.pyspy.txt")
        yield HostProc(proc, list(ready["hosts"]), ready.get("tcp_port"), ready["elapsed_s"])
    finally:
        code = await proc.aclose()
        if code not in (0, None):
            progress(f"{name} exited with code {code}")
        if spy is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                spy.wait(timeout=20)
            if spy.poll() is None:
                spy.terminate()
                spy.wait()


@dataclass
class RawP2pd:
    """A bare p2pd (no handlers) and its spawn-to-ready time."""

    proc: DaemonProcess
    ready_ms: float  # spawn until the first IDENTIFY is answered, as DaemonProcess does it


@contextlib.asynccontextmanager
async def raw_p2pd(
    ctx: Ctx, *, enable_dht: bool = False, dht_mode: DhtMode = "auto"
) -> AsyncIterator[RawP2pd]:
    """A bare p2pd on loopback, its pid tracked in ``ctx``; stopped on exit."""
    runtime = RuntimeDir()
    try:
        sock = runtime.file("p2pd.sock")
        spec = DaemonSpec(
            binary=ctx.p2pd,
            control_socket=sock,
            listen=(LOOPBACK,),
            enable_dht=enable_dht,
            dht_mode=dht_mode,
        )
        proc = DaemonProcess(spec)
        probe = DaemonControl(f"/unix{sock}", request_timeout=2.0)
        async with anyio.create_task_group() as tg:
            t0 = time.perf_counter()
            try:
                await proc.start(tg, ready_check=probe.identify, timeout=10)
                ready_ms = (time.perf_counter() - t0) * 1000
                if proc.pid:
                    ctx.daemon_pids.add(proc.pid)
                yield RawP2pd(proc, ready_ms)
            finally:
                await proc.stop(grace=3)
    finally:
        runtime.close()


async def timed_batch(op: Callable[[], Awaitable[object]], n: int) -> list[float]:
    """Run ``op`` ``n`` times one after the other; each duration in ms."""
    samples: list[float] = []
    for _ in range(n):
        t0 = time.perf_counter()
        await op()
        samples.append((time.perf_counter() - t0) * 1000)
    return samples


def cold_start(ctx: Ctx, **options: Any) -> Batch:
    """A batch that starts one new node (``options`` over the bench defaults), timing
    ``create_node`` to ready in ms, then stops it."""

    async def start(_: int) -> list[float]:
        node = ctx.node(**options)
        t0 = time.perf_counter()
        await node.create_node()
        elapsed = (time.perf_counter() - t0) * 1000
        ctx.track(node)
        await node.stop()
        return [elapsed]

    return start


def batch_of(op: Callable[[], Awaitable[object]]) -> Batch:
    async def run(n: int) -> list[float]:
        return await timed_batch(op, n)

    return run


async def interleaved(
    batches: Mapping[str, Batch], *, rounds: int, per_round: int, warmup: int = 0
) -> dict[str, list[float]]:
    """Each round runs every batch once, in an order rotated per round; samples pooled."""
    names = list(batches)
    for name in names:
        if warmup:
            await batches[name](warmup)
    out: dict[str, list[float]] = {name: [] for name in names}
    for r in range(rounds):
        k = r % len(names)
        for name in names[k:] + names[:k]:
            out[name] += await batches[name](per_round)
    return out
