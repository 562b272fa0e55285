"""Running the real ``fabstir-sidecar`` console script as a subprocess in integration tests."""

from __future__ import annotations

import os
import queue
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Self

import pytest

LOG_VARS = ("FABSTIR_LOG_LEVEL", "FABSTIR_LOG_FORMAT")


def cli_path() -> str:
    """The console script beside this interpreter, else the one on PATH."""
    beside = Path(sys.executable).parent / "fabstir-sidecar"
    if beside.exists():
        return str(beside)
    found = shutil.which("fabstir-sidecar")
    if found is None:
        pytest.fail("the fabstir-sidecar console script is not installed")
    return found


def cli_env(p2pd_path: str, *, drop: tuple[str, ...] = (), **settings: str) -> dict[str, str]:
    """This process's environment without P2P_* variables (nor ``drop``), for a CLI that
    runs ``p2pd_path`` with mDNS off; ``settings`` are added last."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("P2P_") and k not in drop}
    env.update(P2PD_BIN=p2pd_path, P2P_ENABLE_MDNS="false")
    env.update(settings)
    return env


def run_cli(env: dict[str, str], *args: str, timeout: float) -> subprocess.CompletedProcess[str]:
    """Run the CLI to its end, output captured as text; the exit code is not checked."""
    return subprocess.run(
        [cli_path(), *args],
        env=env,
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=timeout,
        check=False,
    )


def spawn_cli(env: dict[str, str], *args: str) -> subprocess.Popen[str]:
    """Start the CLI with piped text stdout and stderr (stdin closed)."""
    return subprocess.Popen(
        [cli_path(), *args],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


class Lines:
    """A pipe's lines, collected by a thread so a test can wait for one with a deadline."""

    def __init__(self, pipe: IO[str]) -> None:
        self.lines: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._thread = threading.Thread(target=self._pump, args=(pipe,), daemon=True)
        self._thread.start()

    def _pump(self, pipe: IO[str]) -> None:
        for line in pipe:
            self._queue.put(line.rstrip("\n"))
        self._queue.put(None)

    def wait_for(self, predicate: Callable[[str], bool], timeout: float) -> str:
        """The first line (seen so far or still to come) that ``predicate`` accepts."""
        deadline = time.monotonic() + timeout
        for line in self.lines:
            if predicate(line):
                return line
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"no matching line within {timeout}s; got {self.lines}")
            try:
                line = self._queue.get(timeout=remaining)
            except queue.Empty:
                continue
            if line is None:
                raise AssertionError(f"the process closed its output; got {self.lines}")
            self.lines.append(line)
            if predicate(line):
                return line

    def first(self, timeout: float) -> str:
        return self.wait_for(lambda _line: True, timeout)

    def drain(self, timeout: float = 5.0) -> list[str]:
        self._thread.join(timeout)
        while True:
            try:
                line = self._queue.get_nowait()
            except queue.Empty:
                return self.lines
            if line is not None:
                self.lines.append(line)


@dataclass
class Running:
    """A CLI process, its output lines, and its JSON ready line once the test read it."""

    proc: subprocess.Popen[str]
    stdout: Lines
    stderr: Lines
    ready: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def launch(cls, env: dict[str, str], *args: str) -> Self:
        """Start the CLI (``spawn_cli``) and collect its stdout and stderr lines."""
        proc = spawn_cli(env, *args)
        assert proc.stdout is not None and proc.stderr is not None
        return cls(proc, Lines(proc.stdout), Lines(proc.stderr))

    @property
    def peer_id(self) -> str:
        return str(self.ready["peer_id"])

    @property
    def addr(self) -> str:
        return str(self.ready["addrs"][0])
