"""The real ``fabstir-sidecar host / status / job`` commands, as subprocesses on loopback."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.integration import cli_helpers
from tests.integration.cli_helpers import Running
from tests.integration.helpers import free_port

pytestmark = pytest.mark.integration

START_TIMEOUT = 20.0
CALL_TIMEOUT = 30.0


def cli_env(p2pd_path: str) -> dict[str, str]:
    """The shared CLI environment, DHT off, quiet logs and unbuffered output."""
    return cli_helpers.cli_env(
        p2pd_path, P2P_ENABLE_DHT="false", FABSTIR_LOG_LEVEL="warning", PYTHONUNBUFFERED="1"
    )


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


class HostProcess(Running):
    def job_events(self, count: int, timeout: float = 10.0) -> list[dict[str, Any]]:
        def enough(_: str) -> bool:
            return len([e for e in events(self.stdout.lines) if e["event"] == "job"]) >= count

        if not enough(""):
            self.stdout.wait_for(enough, timeout)
        return [e for e in events(self.stdout.lines) if e["event"] == "job"]


HOST_ARGS = ("host", "--model", "m1", "--model", "m2", "--reputation", "80", "--location", "de")


@pytest.fixture
def host(p2pd_path: str) -> Iterator[HostProcess]:
    running = HostProcess.launch(
        cli_env(p2pd_path), *HOST_ARGS, "--max-jobs", "2", "--json", "--no-dht"
    )
    try:
        first = running.stdout.wait_for(lambda line: bool(line.strip()), START_TIMEOUT)
        running.ready = json.loads(first)
        yield running
    finally:
        if running.proc.poll() is None:
            running.proc.kill()
            running.proc.wait(10)
        running.stderr.drain()


def run_cli(p2pd_path: str, *args: str) -> subprocess.CompletedProcess[str]:
    return cli_helpers.run_cli(cli_env(p2pd_path), *args, timeout=CALL_TIMEOUT)


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
    port = free_port()
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


def test_host_announces_the_given_addresses(p2pd_path: str) -> None:
    """``host --announce``: the ready line and the status record carry the announced
    addresses (e.g. a container's public address), not the listen address."""
    port = free_port()
    announced = f"/ip4/127.0.0.1/tcp/{port}"
    running = HostProcess.launch(
        cli_env(p2pd_path),
        *HOST_ARGS,
        "--listen",
        f"/ip4/0.0.0.0/tcp/{port}",
        "--announce",
        announced,
        "--json",
        "--no-dht",
    )
    try:
        ready = json.loads(running.stdout.wait_for(lambda line: bool(line.strip()), START_TIMEOUT))
        peer_id = ready["peer_id"]
        assert ready["addrs"] == [f"{announced}/p2p/{peer_id}"]
        status = run_cli(p2pd_path, "status", ready["addrs"][0], "--json")
        assert status.returncode == 0, status.stderr
        record = json.loads(status.stdout.strip().splitlines()[-1])
        assert record["addrs"] == [f"{announced}/p2p/{peer_id}"]
    finally:
        if running.proc.poll() is None:
            running.proc.kill()
            running.proc.wait(10)
        running.stderr.drain()
