"""The root ``docker-compose.yml`` (bootstrap node, two echo hosts, client) on a real engine.

The client runs ``find`` then ``job`` for each model and exits; the test waits for its exit
code (``docker wait``, the form that ends: ``up --abort-on-container-exit`` does not) and
asserts what it found and the job results, and that each host served its job.
"""

from __future__ import annotations

import json
import subprocess
from typing import Any

import pytest

from .conftest import ROOT, Compose

pytestmark = [pytest.mark.integration, pytest.mark.containers, pytest.mark.timeout(420)]

MODELS = ("llama-3.2-1b-instruct", "mistral-7b-instruct")  # one per host in the compose file
PROMPT = "hello from the compose client"  # the client's prompt; the echo backend returns it


@pytest.fixture(scope="module")
def docker_compose_file() -> str:
    return str(ROOT / "docker-compose.yml")


def json_lines(text: str) -> list[dict[str, Any]]:
    """The JSON objects among log lines (stdout and stderr are interleaved)."""
    objects = []
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith("{"):
            try:
                value = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(value, dict):
                objects.append(value)
    return objects


def test_client_finds_both_hosts_and_gets_both_job_results(compose: Compose) -> None:
    client = compose.container("client")
    assert client, f"no client container\n{compose.logs()}"
    code = subprocess.run(
        ["docker", "wait", client], capture_output=True, text=True, timeout=300
    ).stdout.strip()
    client_logs = compose.logs("client")
    assert code == "0", f"client exited with {code}\n{client_logs}\n--- all:\n{compose.logs()}"

    lines = json_lines(client_logs)
    found = [line for line in lines if "peer_id" in line and "models" in line]
    results = [line for line in lines if line.get("type") == "job_result"]
    hosts = {}
    for model in MODELS:
        rows = [row for row in found if model in row["models"]]
        assert rows, f"the client found no host for {model}:\n{client_logs}"
        hosts[model] = rows[0]["peer_id"]
    assert len(set(hosts.values())) == len(MODELS), hosts
    assert len(results) == len(MODELS), f"one job result per model expected:\n{client_logs}"
    for result in results:
        assert result["content"] == f"echo: {PROMPT}", result
        assert result["finish_reason"] == "stop", result

    served = {
        (event["model"], event["outcome"])
        for event in json_lines(compose.logs("host-llama", "host-mistral"))
        if event.get("event") == "job"
    }
    for model in MODELS:
        assert (model, "result") in served, f"no host reported a {model} job: {served}"
