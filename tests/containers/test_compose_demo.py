"""The root ``docker-compose.yml`` (bootstrap node, two echo hosts, client, HTTP gateway and a
curl client) on a real engine.

The client runs ``find`` then ``job`` for each model and exits; the test waits for its exit
code (``docker wait``, the form that ends: ``up --abort-on-container-exit`` does not) and
asserts what it found and the job results, and that each host served its job. The curl client
(nothing but curl and sh, in ``fabstir-curl:local``) lists the gateway's models and gets a chat
completion plain and streamed; the test parses what it printed (the gateway's own JSON and SSE
lines) and checks the gateway from the host too, through its published loopback port.
"""

from __future__ import annotations

import json
import subprocess
from typing import Any

import httpx
import pytest

from .conftest import ROOT, Compose

pytestmark = [pytest.mark.integration, pytest.mark.containers, pytest.mark.timeout(420)]

MODELS = ("llama-3.2-1b-instruct", "mistral-7b-instruct")  # one per host in the compose file
PROMPT = "hello from the compose client"  # the client's prompt; the echo backend returns it
# The curl client's chat messages (one user message each); the gateway renders the prompt
# `user: <content>` then `assistant:`, which the echo backend echoes word by word.
CURL_PLAIN, CURL_STREAMED = "hello from curl", "stream to curl"


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


def _wait(compose: Compose, service: str) -> str:
    """Wait for a one-shot service's container to exit; return its logs (asserting exit 0)."""
    container = compose.container(service)
    assert container, f"no {service} container\n{compose.logs()}"
    code = subprocess.run(
        ["docker", "wait", container], capture_output=True, text=True, timeout=300
    ).stdout.strip()
    logs = compose.logs(service)
    assert code == "0", f"{service} exited with {code}\n{logs}\n--- all:\n{compose.logs()}"
    return logs


def _ready_peer_id(compose: Compose, service: str) -> str:
    ready = [e for e in json_lines(compose.logs(service)) if e.get("event") == "ready"]
    assert ready, f"{service} printed no ready line:\n{compose.logs(service)}"
    peer_id: str = ready[0]["peer_id"]
    return peer_id


def test_curl_client_lists_models_and_gets_plain_and_streamed_completions(
    compose: Compose,
) -> None:
    logs = _wait(compose, "curl-client")
    lines = json_lines(logs)

    (models,) = [line for line in lines if line.get("object") == "list"]
    listed = {model["id"]: model for model in models["data"]}
    assert set(MODELS) <= set(listed), f"the gateway lists {sorted(listed)}"
    for model in MODELS:
        assert listed[model]["owned_by"] == "fabstir", listed[model]
        assert listed[model]["fabstir"]["hosts"] == 1, listed[model]  # one host per model

    (completion,) = [line for line in lines if line.get("object") == "chat.completion"]
    assert completion["model"] == MODELS[0], completion
    (choice,) = completion["choices"]
    assert choice["message"] == {
        "role": "assistant",
        "content": f"echo: user: {CURL_PLAIN} assistant:",
    }, choice
    assert choice["finish_reason"] == "stop", choice
    served_by = [
        line.split("served by ", 1)[1].strip() for line in logs.splitlines() if "served by" in line
    ]
    assert served_by == [_ready_peer_id(compose, "host-llama")], served_by

    data = [line.strip() for line in logs.splitlines() if line.startswith("data: ")]
    assert data and data[-1] == "data: [DONE]", f"the stream did not end with [DONE]:\n{logs}"
    chunks = [json.loads(line.removeprefix("data: ")) for line in data[:-1]]
    assert all(chunk["object"] == "chat.completion.chunk" for chunk in chunks), chunks
    assert {chunk["model"] for chunk in chunks} == {MODELS[1]}, chunks
    assert len(chunks) > 2, "one chunk per token expected, then the finish chunk"
    text = "".join(chunk["choices"][0]["delta"].get("content") or "" for chunk in chunks)
    assert text == f"echo: user: {CURL_STREAMED} assistant:", text
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop", chunks[-1]


def test_gateway_is_published_on_the_host_loopback_and_needs_the_token(
    compose: Compose,
) -> None:
    published = compose.run("port", "gateway", "8080").stdout.strip()
    host, port = published.rsplit(":", 1)
    assert host == "127.0.0.1", f"the gateway must be published on loopback only: {published}"
    base = f"http://127.0.0.1:{port}"
    health = httpx.get(f"{base}/health", timeout=10)  # no token needed for /health
    assert health.status_code == 200 and health.json()["status"] == "healthy", health.text
    denied = httpx.get(f"{base}/v1/models", timeout=10)
    assert denied.status_code == 401, denied.text
    assert denied.json()["error"]["code"] == "invalid_token", denied.text
    gateway_ready = [e for e in json_lines(compose.logs("gateway")) if e.get("event") == "ready"]
    assert gateway_ready and gateway_ready[0]["http"].endswith(":8080"), gateway_ready
