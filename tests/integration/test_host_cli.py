"""The real ``fabstir-sidecar host / status / job`` commands, as subprocesses on loopback."""

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
from pathlib import Path
from typing import IO, Any

import pytest

pytestmark = pytest.mark.integration

CLI = Path(sys.executable).parent / "fabstir-sidecar"
START_TIMEOUT = 20.0
CALL_TIMEOUT = 30.0


def cli_env(p2pd_path: str) -> dict[str, str]:
    env = dict(os.environ)
    for var in (
        "P2P_LISTEN_ADDRESSES",
        "P2P_BOOTSTRAP_NODES",
        "P2P_DAEMON_ADDR",
        "P2P_IDENTITY_FILE",
    ):
        env.pop(var, None)
    env.update(
        P2PD_BIN=p2pd_path,
        P2P_ENABLE_MDNS="false",
        P2P_ENABLE_DHT="false",
        FABSTIR_LOG_LEVEL="warning",
        PYTHONUNBUFFERED="1",
    )
    return env


class Lines:
    """Collects a pipe's lines in a thread, so the test can wait for one with a deadline."""

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

    def drain(self, timeout: float = 5.0) -> list[str]:
        self._thread.join(timeout)
        while True:
            try:
                line = self._queue.get_nowait()
            except queue.Empty:
                return self.lines
            if line is not None:
                self.lines.append(line)


def events(lines: list[str]) -> list[dict[str, Any]]:
    out = []
    for line in lines:
        try:
            value = json.loads(line)
        except ValueError:
            continue
        if isinstance(value, dict) and "event" in value:
            out.append(value)
    return out


class HostProcess:
    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.proc = proc
        assert proc.stdout is not None and proc.stderr is not None
        self.stdout = Lines(proc.stdout)
        self.stderr = Lines(proc.stderr)
        self.ready: dict[str, Any] = {}

    def job_events(self, count: int, timeout: float = 10.0) -> list[dict[str, Any]]:
        def enough(_: str) -> bool:
            return len([e for e in events(self.stdout.lines) if e["event"] == "job"]) >= count

        if not enough(""):
            self.stdout.wait_for(enough, timeout)
        return [e for e in events(self.stdout.lines) if e["event"] == "job"]


@pytest.fixture
def host(p2pd_path: str) -> Iterator[HostProcess]:
    proc = subprocess.Popen(
        [
            str(CLI),
            "host",
            "--model",
            "m1",
            "--model",
            "m2",
            "--reputation",
            "80",
            "--location",
            "de",
            "--max-jobs",
            "2",
            "--json",
            "--no-dht",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
        env=cli_env(p2pd_path),
    )
    running = HostProcess(proc)
    try:
        first = running.stdout.wait_for(lambda line: bool(line.strip()), START_TIMEOUT)
        running.ready = json.loads(first)
        yield running
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        running.stderr.drain()


def run_cli(p2pd_path: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(CLI), *args],
        capture_output=True,
        text=True,
        timeout=CALL_TIMEOUT,
        env=cli_env(p2pd_path),
        stdin=subprocess.DEVNULL,
        check=False,
    )


def test_host_status_and_jobs_through_the_cli(p2pd_path: str, host: HostProcess) -> None:
    ready = host.ready
    assert ready["event"] == "ready"
    peer_id = ready["peer_id"]
    assert ready["addrs"] and all(a.endswith(f"/p2p/{peer_id}") for a in ready["addrs"])
    addr = ready["addrs"][0]

    # status --json: the record plus the measured latency
    status = run_cli(p2pd_path, "status", addr, "--json")
    assert status.returncode == 0, status.stderr
    record = json.loads(status.stdout.strip().splitlines()[-1])
    assert record["peer_id"] == peer_id
    assert record["models"] == ["m1", "m2"]
    assert record["reputation"] == 80
    assert record["location"] == "DE"
    assert record["max_jobs"] == 2
    assert record["active_jobs"] == 0
    assert isinstance(record["uptime_s"], int)
    assert record["version"]
    assert record["latency_ms"] > 0

    # job --json: the job_result JSON
    job = run_cli(p2pd_path, "job", addr, "--model", "m1", "--prompt", "a b c", "--json")
    assert job.returncode == 0, job.stderr
    result = json.loads(job.stdout.strip().splitlines()[-1])
    assert result["type"] == "job_result"
    assert result["content"] == "echo: a b c"
    assert result["finish_reason"] == "stop"
    assert result["tokens_used"] == 4
    job_id = result["job_id"]

    # job --stream (plain): the tokens, i.e. the content, on stdout
    streamed = run_cli(p2pd_path, "job", addr, "--model", "m2", "--prompt", "a b c", "--stream")
    assert streamed.returncode == 0, streamed.stderr
    assert streamed.stdout == "echo: a b c\n"

    # the host reported both jobs, with the clients' authenticated peer IDs
    jobs = host.job_events(2)
    assert jobs[0] == {
        "event": "job",
        "from": jobs[0]["from"],
        "job_id": job_id,
        "model": "m1",
        "outcome": "result",
    }
    assert jobs[1]["model"] == "m2" and jobs[1]["outcome"] == "result"
    for event in jobs:
        assert event["from"] and event["from"] != peer_id

    # a model the host does not serve: non-zero exit, one error line, host says rejected
    rejected = run_cli(p2pd_path, "job", addr, "--model", "gpt-9", "--prompt", "x")
    assert rejected.returncode != 0
    assert rejected.stdout == ""
    errors = [line for line in rejected.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, rejected.stderr
    assert "gpt-9" in errors[0] and "rejected" in errors[0]
    jobs = host.job_events(3)
    assert jobs[2]["model"] == "gpt-9"
    assert jobs[2]["outcome"] == "rejected"

    # SIGTERM: a clean exit
    host.proc.send_signal(signal.SIGTERM)
    assert host.proc.wait(timeout=15) == 0
    leftovers = [line for line in host.stderr.drain() if "Traceback" in line]
    assert not leftovers, host.stderr.lines


def test_status_of_an_unreachable_host_fails_with_one_error_line(p2pd_path: str) -> None:
    # A well-formed address nobody listens on (we bound the port and closed it again).
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    peer = "12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXTN"
    started = time.monotonic()
    done = run_cli(
        p2pd_path,
        "status",
        f"/ip4/127.0.0.1/tcp/{port}/p2p/{peer}",
        "--json",
        "--connection-timeout",
        "2000",
    )
    assert done.returncode != 0
    assert done.stdout == ""
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, done.stderr
    assert time.monotonic() - started < CALL_TIMEOUT
