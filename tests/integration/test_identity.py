"""The peer id we compute from a key file is the one the real p2pd reports."""

from __future__ import annotations

import queue
import subprocess
import tempfile
import threading
from pathlib import Path

import pytest

from fabstir_sidecar.core.errors import DaemonNotFoundError
from fabstir_sidecar.daemon.binary import find_p2pd
from fabstir_sidecar.daemon.identity import generate_identity, peer_id_from_key_file

pytestmark = pytest.mark.integration

STARTUP_TIMEOUT_S = 20.0


@pytest.fixture(scope="module")
def p2pd() -> Path:
    try:
        return find_p2pd()
    except DaemonNotFoundError as exc:
        pytest.skip(f"p2pd not available: {exc}")


def _read_peer_id(proc: subprocess.Popen[str]) -> str:
    """Wait for the daemon's ``Peer ID: ...`` line, without blocking past the deadline."""
    assert proc.stdout is not None
    lines: queue.Queue[str | None] = queue.Queue()

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.put(line)
        lines.put(None)

    threading.Thread(target=pump, daemon=True).start()
    seen: list[str] = []
    while True:
        try:
            line = lines.get(timeout=STARTUP_TIMEOUT_S)
        except queue.Empty:
            pytest.fail(f"p2pd printed no peer id within {STARTUP_TIMEOUT_S} s: {seen}")
        if line is None:
            pytest.fail(f"p2pd exited (code {proc.poll()}) without a peer id: {seen}")
        seen.append(line.rstrip())
        if line.startswith("Peer ID:"):
            return line.split(":", 1)[1].strip()


def test_daemon_reports_the_same_peer_id(p2pd: Path) -> None:
    # A short directory: AF_UNIX socket paths are limited to ~108 bytes.
    with tempfile.TemporaryDirectory(prefix="fsid-") as tmp:
        key = Path(tmp) / "node.key"
        expected = generate_identity(key)
        cmd = [
            str(p2pd),
            "-listen", f"/unix{tmp}/c.sock",
            "-id", str(key),
            "-bootstrapPeers", "",  # never contact the public IPFS bootstrap peers
            "-hostAddrs", "/ip4/127.0.0.1/tcp/0",
        ]  # fmt: skip
        proc = subprocess.Popen(
            cmd,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            stdin=subprocess.DEVNULL,
            text=True,
        )
        try:
            reported = _read_peer_id(proc)
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)
        assert reported == expected
        assert reported == peer_id_from_key_file(key)
