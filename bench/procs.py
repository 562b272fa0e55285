"""Process-level helpers: progress lines, /proc readings, machine facts, JSON-lines children.

Everything here reads ``/proc`` directly (Linux only, as the package's daemon handling is),
so the suite needs no extra dependency for memory and file-descriptor figures.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import anyio
import anyio.abc

_T0 = time.monotonic()
REPO_ROOT = Path(__file__).resolve().parent.parent


def progress(message: str) -> None:
    """One progress line on stderr, with the seconds since the suite started."""
    print(f"[bench {time.monotonic() - _T0:7.1f}s] {message}", file=sys.stderr, flush=True)


# ------------------------------------------------------------------- /proc


def rss_kib(pid: int) -> int | None:
    """VmRSS of ``pid`` in KiB (None if the process is gone)."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return None


def fd_count(pid: int | None = None) -> int | None:
    """Open file descriptors of ``pid`` (this process if None)."""
    path = Path("/proc/self/fd" if pid is None else f"/proc/{pid}/fd")
    try:
        return len(os.listdir(path))
    except OSError:
        return None


def _stat(pid: int) -> tuple[str, int] | None:
    """(comm, ppid) of ``pid`` from /proc/<pid>/stat."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    comm = raw[raw.index("(") + 1 : raw.rindex(")")]
    fields = raw[raw.rindex(")") + 2 :].split()
    if fields and fields[0] == "Z":  # a zombie holds no resources; its parent reaps it
        return None
    return comm, int(fields[1])


def descendants(root: int) -> dict[int, str]:
    """Live descendants of ``root``: pid -> comm."""
    table: dict[int, tuple[str, int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            st = _stat(int(entry))
            if st is not None:
                table[int(entry)] = st
    children: dict[int, list[int]] = {}
    for pid, (_, ppid) in table.items():
        children.setdefault(ppid, []).append(pid)
    found: dict[int, str] = {}
    todo = [root]
    while todo:
        for child in children.get(todo.pop(), []):
            found[child] = table[child][0]
            todo.append(child)
    return found


def p2pd_descendants(root: int | None = None) -> list[int]:
    """p2pd processes (``p2pd``, ``p2pd-dev``, ...) started, directly or not, by ``root``."""
    tree = descendants(os.getpid() if root is None else root)
    return sorted(pid for pid, comm in tree.items() if comm.startswith("p2pd"))


def alive(pid: int) -> bool:
    return _stat(pid) is not None


# ------------------------------------------------------------- machine facts


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def loadavg() -> list[float]:
    """1, 5 and 15 minute load averages (other work on the machine shows up here)."""
    try:
        return [float(x) for x in Path("/proc/loadavg").read_text().split()[:3]]
    except (OSError, ValueError):
        return []


def machine_facts(p2pd: Path | None) -> dict[str, Any]:
    cpu = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem_kib = 0
    with contextlib.suppress(OSError, ValueError, IndexError):
        mem_kib = int(Path("/proc/meminfo").read_text().split()[1])
    facts: dict[str, Any] = {
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "memory_gib": round(mem_kib / (1024 * 1024), 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "python_impl": platform.python_implementation(),
        "p2pd": str(p2pd) if p2pd else None,
        "p2pd_sha256": sha256_of(p2pd) if p2pd else None,
        "loadavg_at_end": loadavg(),
    }
    with contextlib.suppress(Exception):
        import importlib.metadata as md

        facts["packages"] = {
            name: md.version(name)
            for name in ("fabstir-sidecar", "anyio", "p2pclient", "protobuf", "multiaddr")
        }
    return facts


# ------------------------------------------------------------ JSON-lines children


class LineProcess:
    """A child speaking JSON lines on stdout and taking commands on stdin.

    Closing stdin asks it to stop; ``aclose`` waits for that, then terminates and kills.
    """

    def __init__(self, proc: anyio.abc.Process, name: str) -> None:
        self.proc = proc
        self.name = name
        self._buffer = b""

    @classmethod
    async def start(
        cls, argv: Sequence[str], *, name: str, env: dict[str, str] | None = None
    ) -> LineProcess:
        proc = await anyio.open_process(
            list(argv),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=None,  # the child's own diagnostics go straight to our stderr
            cwd=str(REPO_ROOT),
            env=env,
        )
        return cls(proc, name)

    @property
    def pid(self) -> int:
        return self.proc.pid

    async def readline(self, timeout: float) -> str:
        assert self.proc.stdout is not None
        with anyio.fail_after(timeout):
            while b"\n" not in self._buffer:
                try:
                    chunk = await self.proc.stdout.receive(65536)
                except anyio.EndOfStream:
                    raise RuntimeError(
                        f"{self.name} (pid {self.pid}) exited without answering"
                    ) from None
                self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        return line.decode()

    async def read_json(self, timeout: float) -> dict[str, Any]:
        """The next JSON line (non-JSON lines are skipped and echoed to stderr)."""
        deadline = time.monotonic() + timeout
        while True:
            line = await self.readline(max(deadline - time.monotonic(), 0.001))
            try:
                value = json.loads(line)
            except ValueError:
                print(f"[{self.name}] {line}", file=sys.stderr)
                continue
            if isinstance(value, dict):
                return value

    async def send(self, line: str) -> None:
        assert self.proc.stdin is not None
        await self.proc.stdin.send(line.encode() + b"\n")

    async def request(self, line: str, timeout: float) -> dict[str, Any]:
        await self.send(line)
        return await self.read_json(timeout)

    async def aclose(self, grace: float = 15.0) -> int | None:
        with anyio.CancelScope(shield=True):
            if self.proc.stdin is not None:
                with contextlib.suppress(Exception):
                    await self.proc.stdin.aclose()
            with anyio.move_on_after(grace):
                await self.proc.wait()
            if self.proc.returncode is None:
                progress(f"{self.name} (pid {self.pid}) did not stop, terminating it")
                with contextlib.suppress(ProcessLookupError):
                    self.proc.terminate()
                with anyio.move_on_after(5):
                    await self.proc.wait()
            if self.proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    self.proc.kill()
                await self.proc.wait()
            if self.proc.stdout is not None:
                await self.proc.stdout.aclose()
        return self.proc.returncode
