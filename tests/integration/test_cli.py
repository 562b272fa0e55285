"""The real ``fabstir-sidecar`` console script, run as subprocesses against real p2pd."""

from __future__ import annotations

import json
import os
import selectors
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest

from fabstir_sidecar.daemon.identity import generate_identity
from tests.integration import cli_helpers
from tests.integration.cli_helpers import LOG_VARS, cli_path, spawn_cli
from tests.integration.helpers import LOOPBACK, child_pids, free_port, pid_gone, raw_daemon

pytestmark = pytest.mark.integration

RUN_TIMEOUT = 30.0
READY_TIMEOUT = 20.0


def cli_env(p2pd_path: str, **extra: str) -> dict[str, str]:
    """The shared CLI environment, minus inherited FABSTIR_LOG_* settings, DHT off."""
    return cli_helpers.cli_env(p2pd_path, drop=LOG_VARS, P2P_ENABLE_DHT="false", **extra)


def run_cli(
    p2pd_path: str, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return cli_helpers.run_cli(env or cli_env(p2pd_path), *args, timeout=RUN_TIMEOUT)


class CliNode:
    """A ``fabstir-sidecar node --json`` subprocess; reads its JSON lines with deadlines."""

    def __init__(self, p2pd_path: str, *args: str) -> None:
        self.proc = spawn_cli(
            cli_env(p2pd_path), "node", "--json", "--no-dht", "--listen", LOOPBACK, *args
        )
        self._selector = selectors.DefaultSelector()
        assert self.proc.stdout is not None
        self._selector.register(self.proc.stdout, selectors.EVENT_READ)

    def read_event(self, timeout: float) -> dict[str, Any]:
        assert self.proc.stdout is not None
        if not self._selector.select(timeout):
            pytest.fail(f"fabstir-sidecar node printed nothing within {timeout}s")
        line = self.proc.stdout.readline()
        if not line:
            self.proc.kill()
            _, err = self.proc.communicate(timeout=5)
            pytest.fail(f"fabstir-sidecar node exited ({self.proc.returncode}): {err}")
        event: dict[str, Any] = json.loads(line)
        return event

    def p2pd_pids(self) -> set[int]:
        return child_pids(self.proc.pid)

    def stop(self, sig: signal.Signals, timeout: float = 15.0) -> int:
        self.proc.send_signal(sig)
        return self.proc.wait(timeout=timeout)

    def cleanup(self) -> None:
        self._selector.close()
        leftovers = self.p2pd_pids() if self.proc.poll() is None else set()
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=5)
        for pid in leftovers:
            if not pid_gone(pid):
                os.kill(pid, signal.SIGKILL)
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()


@pytest.fixture
def cli_nodes(p2pd_path: str) -> Iterator[list[CliNode]]:
    started: list[CliNode] = []
    yield started
    for node in started:
        node.cleanup()


def start_node(cli_nodes: list[CliNode], p2pd_path: str, *args: str) -> CliNode:
    node = CliNode(p2pd_path, *args)
    cli_nodes.append(node)
    return node


def check_ready(event: dict[str, Any]) -> tuple[str, list[str]]:
    assert set(event) == {"event", "peer_id", "addrs"}
    assert event["event"] == "ready"
    peer_id = event["peer_id"]
    assert isinstance(peer_id, str) and peer_id.startswith("12D3KooW")
    addrs = event["addrs"]
    assert addrs and all(a.endswith(f"/p2p/{peer_id}") for a in addrs)
    assert all(a.startswith("/ip4/127.0.0.1/tcp/") for a in addrs)
    return peer_id, addrs


# --------------------------------------------------------------------------- tests


def test_node_ready_send_and_sigterm(
    p2pd_path: str, cli_nodes: list[CliNode], tmp_path: Path
) -> None:
    node = start_node(cli_nodes, p2pd_path)
    peer_id, addrs = check_ready(node.read_event(READY_TIMEOUT))
    (daemon,) = node.p2pd_pids()

    # A known sender identity (through the environment) so we can check "from".
    key = tmp_path / "sender.key"
    sender_id = generate_identity(key)
    message = {"type": "job", "text": "héllo 🚀", "nested": {"n": [1, 2.5, None, True]}}
    raw = json.dumps(message, ensure_ascii=False)
    result = run_cli(
        p2pd_path, "send", addrs[0], raw, env=cli_env(p2pd_path, P2P_IDENTITY_FILE=str(key))
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""

    event = node.read_event(10.0)
    assert event == {"event": "message", "from": sender_id, "message": message}
    assert sender_id != peer_id

    assert node.stop(signal.SIGTERM) == 0
    assert pid_gone(daemon)
    assert node.proc.stdout is not None
    assert node.proc.stdout.read() == ""  # nothing after the events


def test_node_stops_on_sigint(p2pd_path: str, cli_nodes: list[CliNode]) -> None:
    node = start_node(cli_nodes, p2pd_path)
    check_ready(node.read_event(READY_TIMEOUT))
    (daemon,) = node.p2pd_pids()
    assert node.stop(signal.SIGINT) == 0
    assert pid_gone(daemon)


def test_send_to_unreachable_peer_fails_with_one_line(p2pd_path: str, tmp_path: Path) -> None:
    stranger = generate_identity(tmp_path / "stranger.key")
    # A port nobody listens on: the dial is refused at once.
    port = free_port()
    started = time.monotonic()
    result = run_cli(p2pd_path, "send", f"/ip4/127.0.0.1/tcp/{port}/p2p/{stranger}", '{"a": 1}')
    assert time.monotonic() - started < RUN_TIMEOUT
    assert result.returncode != 0
    assert result.returncode == 1
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error:")
    assert stranger in lines[0]
    assert result.stdout == ""


@pytest.mark.parametrize("bad", ['{"a":', "not json", "{'single': 1}", ""])
def test_send_invalid_json_exits_2(p2pd_path: str, bad: str) -> None:
    target = "/ip4/127.0.0.1/tcp/9/p2p/12D3KooWHsHHcDmBi73RNPUqSZikF87QD8ZhAoHeuSq8YmRzXn5g"
    result = run_cli(p2pd_path, "send", target, bad)
    assert result.returncode == 2
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:"), result.stderr


def test_send_invalid_multiaddr_exits_2(p2pd_path: str) -> None:
    result = run_cli(p2pd_path, "send", "/ip4/127.0.0.1/nosuch/1", '{"a": 1}')
    assert result.returncode == 2
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:"), result.stderr


def test_daemon_path(p2pd_path: str) -> None:
    result = run_cli(p2pd_path, "daemon", "path")
    assert result.returncode == 0, result.stderr
    printed = Path(result.stdout.strip())
    assert printed.is_file()
    assert os.access(printed, os.X_OK)
    assert printed.resolve() == Path(p2pd_path).resolve()


def test_identity_is_stable(p2pd_path: str, tmp_path: Path) -> None:
    key = tmp_path / "node.key"
    first = run_cli(p2pd_path, "identity", str(key))
    assert first.returncode == 0, first.stderr
    second = run_cli(p2pd_path, "identity", str(key))
    assert second.returncode == 0, second.stderr
    assert first.stdout == second.stdout
    peer_id = first.stdout.strip()
    assert peer_id.startswith("12D3KooW")
    assert key.stat().st_mode & 0o077 == 0
    shown = run_cli(p2pd_path, "identity", "--show", str(key))
    assert shown.stdout.strip() == peer_id
    missing = run_cli(p2pd_path, "identity", "--show", str(tmp_path / "missing.key"))
    assert missing.returncode == 2
    assert missing.stderr.startswith("error:")


@pytest.mark.anyio
async def test_peers_lists_a_connected_peer(p2pd_path: str, cli_nodes: list[CliNode]) -> None:
    node = start_node(cli_nodes, p2pd_path)
    node_id, node_addrs = check_ready(node.read_event(READY_TIMEOUT))

    with anyio.fail_after(RUN_TIMEOUT):
        async with raw_daemon(p2pd_path) as (_, control, sock):
            await control.connect(node_id, [node_addrs[0].rsplit("/p2p/", 1)[0]])
            env = cli_env(p2pd_path)
            cmd = [cli_path(), "peers", "--api", f"/unix{sock}"]
            result = await anyio.run_process(cmd, env=env, check=False)
            assert result.returncode == 0, result.stderr
            lines = result.stdout.decode().splitlines()
            assert len(lines) == 1
            assert lines[0].split()[0] == node_id
            json_result = await anyio.run_process([*cmd, "--json"], env=env, check=False)
            (event,) = [json.loads(x) for x in json_result.stdout.decode().splitlines()]
            assert event["event"] == "peer"
            assert event["peer_id"] == node_id
            assert any(node_addrs[0].startswith(a) for a in event["addrs"])

    # A control socket nobody listens on: one error line, non-zero exit.
    result = run_cli(p2pd_path, "peers", "--api", f"/unix{sock}")
    assert result.returncode == 1
    assert len(result.stderr.splitlines()) == 1
    assert result.stderr.startswith("error:")
