"""The real ``bootstrap``, ``host``, ``find``, ``diagnose`` and ``demo`` commands, as
subprocesses on loopback (no mDNS; the hosts run the DHT in server mode)."""

from __future__ import annotations

import json
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import pytest

from fabstir_sidecar.p2pd.identity import generate_identity

pytestmark = pytest.mark.integration

CLI = Path(sys.executable).parent / "fabstir-sidecar"
START_TIMEOUT = 20.0
CALL_TIMEOUT = 30.0
FIND_TIMEOUT = "10"  # --timeout of one search, seconds

LLAMA = "llama-3.2-1b-instruct"
MISTRAL = "mistral-7b-instruct"
ROW_KEYS = {"peer_id", "addrs", "models", "reputation", "uptime_s", "location", "latency_ms"}


def cli_env(p2pd_path: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("P2P_")}
    env.update(
        P2PD_BIN=p2pd_path,
        P2P_ENABLE_MDNS="false",
        FABSTIR_LOG_LEVEL="warning",
        PYTHONUNBUFFERED="1",
    )
    return env


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

    def first(self, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while not self.lines:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"no output line within {timeout}s")
            try:
                line = self._queue.get(timeout=remaining)
            except queue.Empty:
                continue
            if line is None:
                raise AssertionError("the process closed its output before printing a line")
            self.lines.append(line)
        return self.lines[0]

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
    proc: subprocess.Popen[str]
    stdout: Lines
    stderr: Lines
    ready: dict[str, Any] = field(default_factory=dict)

    @property
    def peer_id(self) -> str:
        return str(self.ready["peer_id"])

    @property
    def addr(self) -> str:
        return str(self.ready["addrs"][0])


def start(p2pd_path: str, *args: str) -> Running:
    """Start a long-running command and wait for its JSON ready line."""
    proc = subprocess.Popen(
        [str(CLI), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
        env=cli_env(p2pd_path),
    )
    assert proc.stdout is not None and proc.stderr is not None
    running = Running(proc, Lines(proc.stdout), Lines(proc.stderr))
    try:
        running.ready = json.loads(running.stdout.first(START_TIMEOUT))
    except BaseException:
        stop(running)
        raise
    return running


def stop(running: Running) -> int | None:
    """SIGTERM, wait; SIGKILL only if it does not stop in time. Returns the exit code."""
    proc = running.proc
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
    running.stderr.drain()
    running.stdout.drain()
    return proc.returncode


def run_cli(
    p2pd_path: str, *args: str, timeout: float = CALL_TIMEOUT
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(CLI), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=cli_env(p2pd_path),
        stdin=subprocess.DEVNULL,
        check=False,
    )


def error_lines(done: subprocess.CompletedProcess[str]) -> list[str]:
    return [line for line in done.stderr.splitlines() if line.startswith("error:")]


@dataclass
class CliNet:
    boot: Running
    hosts: list[Running]
    p2pd_path: str

    def find(self, *args: str) -> subprocess.CompletedProcess[str]:
        return run_cli(
            self.p2pd_path, "find", "--bootstrap", self.boot.addr, "--timeout", FIND_TIMEOUT, *args
        )


def poll(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout}s: {what}")
        time.sleep(0.2)


@pytest.fixture(scope="module")
def cli_net(p2pd_path: str) -> Iterator[CliNet]:
    started: list[Running] = []
    try:
        boot = start(p2pd_path, "bootstrap", "--json")
        started.append(boot)
        common = ("host", "--json", "--dht-mode", "server", "--bootstrap", boot.addr)
        h1 = start(
            p2pd_path,
            *common,
            *("--model", LLAMA, "--model", MISTRAL, "--reputation", "90", "--location", "us"),
        )
        started.append(h1)
        h2 = start(
            p2pd_path,
            *common,
            *("--model", LLAMA, "--reputation", "50", "--location", "DE", "--max-jobs", "2"),
        )
        started.append(h2)
        net = CliNet(boot, [h1, h2], p2pd_path)

        # The hosts provide their models in the background: wait until a search sees both.
        def both_found() -> bool:
            done = net.find("--all", "--json")
            if done.returncode != 0:
                return False
            return {row["peer_id"] for row in json.loads(done.stdout)} == {h1.peer_id, h2.peer_id}

        poll(both_found, 30, "both hosts found by `find --all`")
        yield net
        # SIGTERM: every long-running command stops cleanly, without a traceback.
        codes = [stop(running) for running in reversed(started)]
        assert codes == [0, 0, 0], codes
        for running in started:
            assert not [line for line in running.stderr.lines if "Traceback" in line]
    finally:
        for running in reversed(started):
            stop(running)  # idempotent: only what is still running


# ----------------------------------------------------------------------------- tests


def test_bootstrap_and_hosts_print_ready_lines(cli_net: CliNet) -> None:
    for running in (cli_net.boot, *cli_net.hosts):
        ready = running.ready
        assert ready["event"] == "ready"
        assert ready["addrs"] and all(
            a.endswith(f"/p2p/{ready['peer_id']}") for a in ready["addrs"]
        )
        assert all(a.startswith("/ip4/127.0.0.1/") for a in ready["addrs"])
        assert running.proc.poll() is None
    assert len({r.peer_id for r in (cli_net.boot, *cli_net.hosts)}) == 3


def test_find_prints_the_best_host_as_one_json_object(cli_net: CliNet) -> None:
    h1, h2 = cli_net.hosts
    done = cli_net.find("--model", LLAMA, "--json")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert len(lines) == 1, done.stdout
    row = json.loads(lines[0])
    assert isinstance(row, dict)
    assert set(row) >= ROW_KEYS
    assert row["peer_id"] in {h1.peer_id, h2.peer_id}
    assert LLAMA in row["models"]
    assert row["latency_ms"] > 0

    # Only host 1 serves mistral: its own record, as declared on its command line.
    done = cli_net.find("--model", MISTRAL, "--json")
    assert done.returncode == 0, done.stderr
    row = json.loads(done.stdout)
    assert row["peer_id"] == h1.peer_id
    assert row["models"] == [LLAMA, MISTRAL]
    assert row["reputation"] == 90
    assert row["location"] == "US"
    assert isinstance(row["uptime_s"], int) and row["uptime_s"] >= 0
    assert row["addrs"] and all(a.endswith(f"/p2p/{h1.peer_id}") for a in row["addrs"])
    assert row["latency_ms"] > 0

    # Criteria flags choose between the two llama hosts.
    for flags, expected in (
        (("--min-reputation", "80"), h1),
        (("--location", "de"), h2),
        (("--max-latency", "60000", "--min-uptime", "0", "--location", "US"), h1),
    ):
        done = cli_net.find("--model", LLAMA, *flags, "--json")
        assert done.returncode == 0, (flags, done.stderr)
        assert json.loads(done.stdout)["peer_id"] == expected.peer_id, flags


def test_find_all_prints_every_match_ranked(cli_net: CliNet) -> None:
    done = cli_net.find("--model", LLAMA, "--all", "--json")
    assert done.returncode == 0, done.stderr
    rows = json.loads(done.stdout)
    assert isinstance(rows, list)
    assert {r["peer_id"] for r in rows} == {h.peer_id for h in cli_net.hosts}
    for row in rows:
        assert set(row) >= ROW_KEYS

    def key(r: dict[str, Any]) -> tuple[float, int, int, str]:
        return (
            r["latency_ms"],
            -r["reputation"],
            -(r["max_jobs"] - r["active_jobs"]),
            r["peer_id"],
        )

    assert rows == sorted(rows, key=key), "ranked by latency, reputation, free capacity"


def test_find_without_a_match_exits_3_with_the_reason(cli_net: CliNet) -> None:
    done = cli_net.find("--model", LLAMA, "--min-reputation", "99", "--json")
    assert done.returncode == 3, done.stderr
    assert done.stdout == ""
    errors = error_lines(done)
    assert len(errors) == 1, done.stderr
    assert "no host matched" in errors[0]
    assert "candidates seen, 2 answered status" in errors[0]
    assert "min_reputation excluded 2" in errors[0]

    done = cli_net.find("--model", "gpt-9", "--json")
    assert done.returncode == 3, done.stderr
    assert done.stdout == ""
    errors = error_lines(done)
    assert len(errors) == 1 and "no host matched" in errors[0], done.stderr


@pytest.fixture
def dead_bootstrap(tmp_path: Path) -> str:
    """A well-formed bootstrap address nobody listens on."""
    peer_id = generate_identity(tmp_path / "nobody.key")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"/ip4/127.0.0.1/tcp/{port}/p2p/{peer_id}"


def test_find_with_an_unreachable_bootstrap_exits_1(p2pd_path: str, dead_bootstrap: str) -> None:
    done = run_cli(p2pd_path, "find", "--bootstrap", dead_bootstrap, "--model", LLAMA, "--json")
    assert done.returncode == 1, done.stderr
    assert done.stdout == ""
    errors = error_lines(done)
    assert len(errors) == 1, done.stderr
    assert "no bootstrap peer reachable" in errors[0]
    assert dead_bootstrap in errors[0]


def test_diagnose_reports_the_node_and_its_bootstrap(cli_net: CliNet) -> None:
    done = run_cli(cli_net.p2pd_path, "diagnose", "--bootstrap", cli_net.boot.addr, "--json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["running"] is True
    assert report["peer_id"]
    assert report["listen_addrs"]
    assert all(a.endswith(f"/p2p/{report['peer_id']}") for a in report["listen_addrs"])
    assert report["bootstrap"] == [{"address": cli_net.boot.addr, "reachable": True, "error": None}]
    assert cli_net.boot.peer_id in report["connected_peers"]
    assert report["dht"]["enabled"] is True


def test_diagnose_shows_an_unreachable_bootstrap_and_exits_1(
    p2pd_path: str, dead_bootstrap: str
) -> None:
    done = run_cli(p2pd_path, "diagnose", "--bootstrap", dead_bootstrap)
    assert done.returncode == 1, done.stderr
    lines = [line for line in done.stdout.splitlines() if line.startswith("bootstrap:")]
    assert len(lines) == 1, done.stdout
    assert dead_bootstrap in lines[0]
    assert "UNREACHABLE (" in lines[0] and "connection refused" in lines[0]
    assert "running:          True" in done.stdout

    done = run_cli(p2pd_path, "diagnose", "--bootstrap", dead_bootstrap, "--json")
    assert done.returncode == 1, done.stderr
    report = json.loads(done.stdout)
    [entry] = report["bootstrap"]
    assert entry["address"] == dead_bootstrap
    assert entry["reachable"] is False
    assert entry["error"] and "connection refused" in entry["error"]


def test_demo_runs_to_done(p2pd_path: str) -> None:
    done = run_cli(p2pd_path, "demo", "--hosts", "3", timeout=90)
    assert done.returncode == 0, done.stderr
    assert "done" in done.stdout.splitlines()[-1], done.stdout
    assert "Traceback" not in done.stderr
