"""A private LAN made of network namespaces, and processes running inside it.

Layout (everything inside namespaces this fixture creates; nothing in the root namespace)::

    fabns-br-<r>:  br0 (bridge, multicast snooping off) with ports vb1..vb4
    fabns-a-<r>:   eth0 10.77.<n>.1/24  <-veth->  vb1
    fabns-b-<r>:   eth0 10.77.<n>.2/24  <-veth->  vb2
    fabns-c-<r>:   eth0 10.77.<n>.3/24  <-veth->  vb3
    fabns-p-<r>:   eth0 10.77.<n>.4/24  <-veth->  vb4   (the probe)

Multicast on these veths never leaves the namespaces. Skipped only when creating a
namespace is not permitted (no root / CAP_SYS_ADMIN) or ``ip`` is missing. Teardown always
deletes the namespaces, first killing (and reporting) any process still inside them.
"""

from __future__ import annotations

import dataclasses
import json
import secrets
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.netns.nat_lab import ip as _ip
from tests.netns.nat_lab import netns_pids, remove_namespaces

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent


@dataclasses.dataclass(frozen=True)
class Host:
    name: str
    ns: str
    ip: str


@dataclasses.dataclass(frozen=True)
class Lan:
    bridge_ns: str
    hosts: dict[str, Host]

    @property
    def namespaces(self) -> list[str]:
        return [h.ns for h in self.hosts.values()] + [self.bridge_ns]


@pytest.fixture(scope="session")
def lan() -> Iterator[Lan]:
    if shutil.which("ip") is None:
        pytest.skip("netns tests need iproute2's `ip`")
    tag = secrets.token_hex(3)
    octet = secrets.randbelow(256)
    bridge_ns = f"fabns-br-{tag}"
    probe = _ip("netns", "add", bridge_ns, check=False)
    if probe.returncode != 0:
        pytest.skip(f"cannot create network namespaces (needs root/CAP_SYS_ADMIN): {probe.stderr}")
    hosts = {
        name: Host(name, f"fabns-{name}-{tag}", f"10.77.{octet}.{i}")
        for i, name in enumerate(("a", "b", "c", "p"), start=1)
    }
    created = [bridge_ns]
    try:
        _ip("-n", bridge_ns, "link", "set", "lo", "up")
        _ip("-n", bridge_ns, "link", "add", "br0", "type", "bridge", "mcast_snooping", "0")
        _ip("-n", bridge_ns, "link", "set", "br0", "up")
        for i, host in enumerate(hosts.values(), start=1):
            _ip("netns", "add", host.ns)
            created.append(host.ns)
            _ip("-n", host.ns, "link", "set", "lo", "up")
            port = f"vb{i}"
            veth = ["link", "add", "eth0", "type", "veth", "peer", "name", port]
            _ip("-n", host.ns, *veth, "netns", bridge_ns)
            _ip("-n", bridge_ns, "link", "set", port, "master", "br0")
            _ip("-n", bridge_ns, "link", "set", port, "up")
            _ip("-n", host.ns, "link", "set", "dev", "eth0", "multicast", "on")
            _ip("-n", host.ns, "addr", "add", f"{host.ip}/24", "dev", "eth0")
            _ip("-n", host.ns, "link", "set", "eth0", "up")
        yield Lan(bridge_ns, hosts)
    finally:
        remove_namespaces(created, "the test namespaces")


class Proc:
    """A subprocess inside a namespace whose stdout is JSON lines, collected by a thread."""

    def __init__(self, name: str, ns: str, argv: list[str], log_dir: Path) -> None:
        self.name = name
        self.ns = ns
        self.stderr_path = log_dir / f"{name}.stderr"
        self.events: list[dict[str, Any]] = []
        self._cond = threading.Condition()
        with self.stderr_path.open("wb") as stderr:
            self.popen = subprocess.Popen(
                ["ip", "netns", "exec", ns, *argv],
                stdout=subprocess.PIPE,
                stderr=stderr,
                cwd=REPO,
                text=True,
            )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.popen.stdout is not None
        for line in self.popen.stdout:
            try:
                event = json.loads(line)
            except json.JSONDecodeError:
                event = {"event": "non_json", "line": line.rstrip()}
            event["_t"] = time.monotonic()
            with self._cond:
                self.events.append(event)
                self._cond.notify_all()

    def wait_for(
        self, predicate: Callable[[dict[str, Any]], bool], timeout: float
    ) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for event in self.events:
                    if predicate(event):
                        return event
                left = deadline - time.monotonic()
                if left <= 0 or (self.popen.poll() is not None and not self._reader.is_alive()):
                    raise AssertionError(
                        f"{self.name}: timed out waiting; events={self.events}\n"
                        f"stderr:\n{self.stderr()}"
                    )
                self._cond.wait(min(left, 0.2))

    def of(self, kind: str) -> list[dict[str, Any]]:
        with self._cond:
            return [e for e in self.events if e.get("event") == kind]

    def signal(self, signum: int) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(signum)

    def stop(self, timeout: float = 15.0) -> int:
        """SIGTERM, wait; SIGKILL if it does not exit. Returns the exit code."""
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(5)
        self._reader.join(5)
        return self.popen.returncode

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")[-4000:]


@pytest.fixture
def spawn(tmp_path: Path) -> Iterator[Callable[..., Proc]]:
    """``spawn(name, ns, script, *args)`` runs ``tests/netns/<script>`` in ``ns``; every
    process still running at the end of the test is stopped."""
    procs: list[Proc] = []

    def start(name: str, ns: str, script: str, *args: str) -> Proc:
        proc = Proc(name, ns, [sys.executable, str(HERE / script), *args], tmp_path)
        procs.append(proc)
        return proc

    try:
        yield start
    finally:
        for proc in procs:
            proc.stop()


def assert_namespaces_empty(lan: Lan, timeout: float = 5.0) -> None:
    """No process (p2pd in particular) is left in any test namespace."""
    deadline = time.monotonic() + timeout
    while True:
        left = {ns: netns_pids(ns) for ns in lan.namespaces}
        left = {ns: pids for ns, pids in left.items() if pids}
        if not left or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert not left, f"processes left in the test namespaces: {left}"
