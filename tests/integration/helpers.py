"""Helpers shared by the integration tests: loopback nodes, a bare p2pd, waiting, processes."""

from __future__ import annotations

import contextlib
import inspect
import socket
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, NamedTuple

import anyio

from fabstir_sidecar import DiscoveryManager
from fabstir_sidecar.daemon.control import DaemonControl
from fabstir_sidecar.daemon.process import DaemonProcess, DaemonSpec
from fabstir_sidecar.daemon.runtime_dir import RuntimeDir

LOOPBACK = "/ip4/127.0.0.1/tcp/0"


def make_node(p2pd_path: str, **options: Any) -> DiscoveryManager:
    """A loopback node without bootstrap peers, mDNS or DHT; ``options`` override."""
    values: dict[str, Any] = {
        "p2pd_path": p2pd_path,
        "listen": [LOOPBACK],
        "bootstrap": [],
        "enable_mdns": False,
        "enable_dht": False,
        "connection_timeout": 5.0,
    }
    values.update(options)
    return DiscoveryManager(**values)


class RawDaemon(NamedTuple):
    proc: DaemonProcess
    control: DaemonControl
    sock: Path  # its control socket


@contextlib.asynccontextmanager
async def raw_daemon(p2pd_path: str) -> AsyncIterator[RawDaemon]:
    """A bare p2pd we run ourselves (no handlers), its control socket in a RuntimeDir."""
    runtime = RuntimeDir()
    sock = runtime.file("p2pd.sock")
    spec = DaemonSpec(
        binary=Path(p2pd_path), control_socket=sock, listen=(LOOPBACK,), enable_dht=False
    )
    control = DaemonControl(f"/unix{sock}", request_timeout=5.0)
    proc = DaemonProcess(spec)
    try:
        async with anyio.create_task_group() as tg:
            try:
                await proc.start(tg, ready_check=control.identify, timeout=10.0)
                yield RawDaemon(proc, control, sock)
            finally:
                await proc.stop(grace=2.0)
    finally:
        runtime.close()


class Inbox:
    """A message handler collecting ``(sender, message)``; ``wait_for`` waits on an event."""

    def __init__(self) -> None:
        self.items: list[tuple[str, Any]] = []
        self._arrived = anyio.Event()

    def __call__(self, sender: str, message: Any) -> None:
        self.items.append((sender, message))
        self._arrived.set()  # wakes current waiters; later ones wait on a fresh event
        self._arrived = anyio.Event()

    async def wait_for(self, count: int, timeout: float = 10.0) -> list[tuple[str, Any]]:
        with anyio.fail_after(timeout):
            while len(self.items) < count:
                await self._arrived.wait()
        return self.items


async def eventually(condition: Callable[[], Any], timeout: float = 10.0) -> None:
    """Poll ``condition`` (sync or async) until it is true; fail after ``timeout`` seconds."""
    with anyio.fail_after(timeout):
        while True:
            result = condition()
            if inspect.isawaitable(result):
                result = await result
            if result:
                return
            await anyio.sleep(0.01)


def free_port() -> int:
    """A loopback TCP port nobody listens on (bound once, then closed again)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def pid_gone(pid: int) -> bool:
    """True if ``pid`` no longer exists (a zombie nobody reaped counts as gone)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return True
    return state in ("Z", "X")


def child_pids(parent: int) -> set[int]:
    """Live (not zombie) processes whose parent is ``parent``."""
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[1] == str(parent) and fields[0] not in ("Z", "X"):
            found.add(int(entry.name))
    return found
