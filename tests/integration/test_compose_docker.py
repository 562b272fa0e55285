"""End to end: the root ``docker-compose.yml`` under a real Docker engine.

Builds the image from ``daemon/Dockerfile``, starts the stack (bootstrap node, two echo
hosts, client) under a project name of its own and checks that the client found a host for
each model through the bootstrap node and got each job's result. The stack is always torn
down with ``docker compose down -v``. Without a reachable engine (``docker info`` fails) or
without the compose plugin the test skips; the static checks are in
``tests/unit/test_compose.py``.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"

# The first build installs the project's dependencies and downloads the hivemind wheel.
BUILD_TIMEOUT = 1800
UP_TIMEOUT = 600  # `up --detach` returns once the client's dependencies are healthy
CLIENT_TIMEOUT = 600
DOWN_TIMEOUT = 300

MODELS = ("llama-3.2-1b-instruct", "mistral-7b-instruct")  # one per host in the compose file
PROMPT = "hello from the compose client"  # the client's prompt; the echo backend returns it


def _docker_unavailable() -> str | None:
    """Why the stack cannot run here, or None."""
    docker = shutil.which("docker")
    if docker is None:
        return "no `docker` client on PATH"
    try:
        info = subprocess.run([docker, "info"], capture_output=True, text=True, timeout=60)
    except subprocess.TimeoutExpired:
        return "no Docker engine reachable (`docker info` timed out)"
    if info.returncode != 0:
        reason = (info.stderr.strip().splitlines() or ["no output"])[0]
        return f"no Docker engine reachable (`docker info` failed: {reason})"
    version = subprocess.run(
        [docker, "compose", "version"], capture_output=True, text=True, timeout=60
    )
    if version.returncode != 0:
        return "the Docker engine is reachable but the `docker compose` plugin is missing"
    return None


class Stack:
    """``docker compose`` for one throw-away project of the root compose file."""

    def __init__(self) -> None:
        self.project = f"fabstir-compose-test-{os.getpid()}-{secrets.token_hex(3)}"
        self.base = [
            "docker",
            "compose",
            "--project-directory",
            str(ROOT),
            "--file",
            str(COMPOSE_FILE),
            "--project-name",
            self.project,
        ]

    def run(self, *args: str, timeout: float) -> subprocess.CompletedProcess[str]:
        return _run([*self.base, *args], timeout=timeout, logs=self.logs)

    def logs(self, *services: str) -> str:
        try:
            result = subprocess.run(
                [*self.base, "logs", "--no-color", "--no-log-prefix", *services],
                capture_output=True,
                text=True,
                timeout=120,
            )
        except subprocess.TimeoutExpired:
            return "(docker compose logs timed out)"
        return result.stdout + result.stderr

    def down(self) -> None:
        """Remove containers, network and volumes; a failure warns, never hides the outcome."""
        command = [*self.base, "down", "--volumes", "--remove-orphans", "--timeout", "10"]
        try:
            result = subprocess.run(command, capture_output=True, text=True, timeout=DOWN_TIMEOUT)
        except subprocess.TimeoutExpired:
            warnings.warn(f"`{' '.join(command)}` timed out", stacklevel=1)
            return
        if result.returncode != 0:
            warnings.warn(f"`{' '.join(command)}` failed: {result.stderr.strip()}", stacklevel=1)


def _run(
    args: list[str], *, timeout: float, logs: Callable[[], str] | None = None
) -> subprocess.CompletedProcess[str]:
    command = " ".join(args)
    try:
        result = subprocess.run(args, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        pytest.fail(f"`{command}` did not finish within {timeout:.0f}s\n{logs() if logs else ''}")
    if result.returncode != 0:
        pytest.fail(
            f"`{command}` exited with {result.returncode}\n"
            f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}\n"
            f"logs:\n{logs() if logs else ''}"
        )
    return result


def _json_lines(text: str) -> list[dict[str, Any]]:
    """The JSON objects among log lines (stdout and stderr are interleaved)."""
    objects = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line.startswith("{"):
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(value, dict):
            objects.append(value)
    return objects


@pytest.mark.timeout(BUILD_TIMEOUT + UP_TIMEOUT + CLIENT_TIMEOUT + DOWN_TIMEOUT + 120)
def test_compose_stack_client_finds_hosts_and_gets_job_results() -> None:
    reason = _docker_unavailable()
    if reason is not None:
        pytest.skip(reason)
    stack = Stack()
    try:
        stack.run("build", timeout=BUILD_TIMEOUT)
        stack.run("up", "--detach", timeout=UP_TIMEOUT)
        client = stack.run("ps", "--all", "--quiet", "client", timeout=60).stdout.strip()
        assert client, f"no client container\n{stack.logs()}"
        code = _run(["docker", "wait", client], timeout=CLIENT_TIMEOUT, logs=stack.logs)
        client_logs = stack.logs("client")
        assert code.stdout.strip() == "0", (
            f"client exited with {code.stdout.strip()}\n{client_logs}\n--- all:\n{stack.logs()}"
        )

        lines = _json_lines(client_logs)
        found = [line for line in lines if "peer_id" in line and "models" in line]
        results = [line for line in lines if line.get("type") == "job_result"]
        hosts_by_model: dict[str, str] = {}
        for model in MODELS:
            rows = [row for row in found if model in row["models"]]
            assert rows, f"the client found no host for {model}:\n{client_logs}"
            hosts_by_model[model] = rows[0]["peer_id"]
        assert len(set(hosts_by_model.values())) == len(MODELS), hosts_by_model
        assert len(results) == len(MODELS), f"expected one job result per model:\n{client_logs}"
        for result in results:
            assert result["content"] == f"echo: {PROMPT}", result
            assert result["finish_reason"] == "stop", result

        # Each host ran the job for its own model (its `job` JSON-lines events).
        served = {
            (event["model"], event["outcome"])
            for event in _json_lines(stack.logs())
            if event.get("event") == "job"
        }
        for model in MODELS:
            assert (model, "result") in served, f"no host reported a {model} job: {served}"
    finally:
        stack.down()
