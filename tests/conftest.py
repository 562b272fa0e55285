"""Shared fixtures. Integration tests use the real p2pd (``fabstir-sidecar daemon install``).

The session ends by asserting that no p2pd process started during the tests survives and that
no runtime directory (control/handler sockets) of this test process is left behind.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from fabstir_sidecar.core.errors import DaemonNotFoundError
from fabstir_sidecar.daemon.binary import find_p2pd
from fabstir_sidecar.daemon.runtime_dir import PREFIX

# Nothing in the tests may reach beyond loopback: never the public IPFS bootstrap peers,
# never a real interface for mDNS. Keep the environment from leaking settings in.
for _var in ("P2P_LISTEN_ADDRESSES", "P2P_BOOTSTRAP_NODES", "P2P_DAEMON_ADDR", "P2P_IDENTITY_FILE"):
    os.environ.pop(_var, None)
os.environ.setdefault("P2P_ENABLE_MDNS", "false")


# Every process this session starts (nodes, CLI subprocesses, their p2pd) inherits this tag,
# so the leak check below counts only our daemons, not those of a benchmark or another test
# run on the same machine.
SESSION_TAG = f"fabstir-test-{os.getpid()}-{uuid.uuid4().hex[:8]}"
os.environ["FABSTIR_TEST_SESSION"] = SESSION_TAG


def _ours(pid: int) -> bool:
    try:
        environ = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:  # gone, or not ours to read: not counted
        return False
    return f"FABSTIR_TEST_SESSION={SESSION_TAG}".encode() in environ.split(b"\0")


def _p2pd_pids() -> set[int]:
    out = subprocess.run(["pgrep", "-x", "p2pd"], capture_output=True, text=True).stdout
    return {int(p) for p in out.split() if _ours(int(p))}


def _our_runtime_dirs() -> list[Path]:
    bases = {Path(tempfile.gettempdir()), Path("/tmp")}
    if os.environ.get("XDG_RUNTIME_DIR"):
        bases.add(Path(os.environ["XDG_RUNTIME_DIR"]))
    found: list[Path] = []
    for base in bases:
        found += base.glob(f"{PREFIX}{os.getpid()}-*")
    return found


@pytest.fixture(scope="session", autouse=True)
def no_leaks_after_session() -> Iterator[None]:
    before = _p2pd_pids()
    yield
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        leaked = _p2pd_pids() - before
        dirs = _our_runtime_dirs()
        if not leaked and not dirs:
            return
        time.sleep(0.1)
    assert not leaked, f"p2pd processes survived the test session: {sorted(leaked)}"
    assert not dirs, f"runtime dirs (sockets) survived the test session: {dirs}"


@pytest.fixture(scope="session")
def p2pd_path() -> str:
    """The real p2pd binary. Missing: a hard error, since CI installs it first."""
    try:
        return str(find_p2pd())
    except DaemonNotFoundError as exc:
        pytest.fail(f"integration tests need p2pd: {exc}", pytrace=False)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"
