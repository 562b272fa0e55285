"""The sidecar-pattern stack (``examples/compose-sidecar``) on a real engine.

Two plain-Python apps, each beside its own p2pd container (shared network namespace with TCP
control; shared volume with unix sockets), find the best host and stream jobs; an SDK message
sent from another container reaches each app (the daemon forwards the inbound stream across
the container boundary); when the preferred host is killed, the apps move to the other one.
The tests run in file order on one stack.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any, TypeVar

import pytest

from .conftest import ROOT, Compose
from .test_compose_demo import json_lines

pytestmark = [pytest.mark.integration, pytest.mark.containers, pytest.mark.timeout(300)]

APPS = ("app", "app-unix")
CONTENT = "echo: hello from the sidecar app"
T = TypeVar("T")


@pytest.fixture(scope="module")
def docker_compose_file() -> str:
    return str(ROOT / "examples" / "compose-sidecar" / "docker-compose.yml")


def eventually(check: Callable[[], T | None], *, timeout: float, what: str, logs: Compose) -> T:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value is not None:
            return value
        time.sleep(0.5)
    pytest.fail(f"{what}: not within {timeout:.0f}s\n--- logs:\n{logs.logs()}")


def events(compose: Compose, service: str, kind: str) -> list[dict[str, Any]]:
    return [e for e in json_lines(compose.logs(service)) if e.get("event") == kind]


def ready(compose: Compose, service: str) -> dict[str, Any]:
    return eventually(
        lambda: next(iter(events(compose, service, "ready")), None),
        timeout=120,
        what=f"{service} ready",
        logs=compose,
    )


def test_each_app_streams_jobs_from_the_best_host(compose: Compose) -> None:
    best = ready(compose, "host-a")["peer_id"]  # reputation 90 beats host-b's 60
    for app in APPS:
        job = eventually(
            lambda app=app: next(
                (e for e in events(compose, app, "job") if e["host"] == best), None
            ),
            timeout=120,
            what=f"{app}: a job on host-a",
            logs=compose,
        )
        assert job["content"] == CONTENT, job


def test_an_sdk_message_reaches_each_app_across_the_container_boundary(
    compose: Compose,
) -> None:
    for app in APPS:
        info = ready(compose, app)
        addr = next(a for a in info["addrs"] if not a.startswith("/ip4/127."))
        message = {"type": "hello", "to": app}
        # A short-lived node in host-b's container: not on the host's port, not its identity.
        compose.run(
            "exec", "-T", "-e", "P2P_LISTEN_ADDRESSES=", "-e", "P2P_IDENTITY_FILE=",
            "host-b", "fabstir-sidecar", "send", addr, json.dumps(message),
        )  # fmt: skip
        received = eventually(
            lambda app=app: next(iter(events(compose, app, "message")), None),
            timeout=30,
            what=f"{app}: the SDK message",
            logs=compose,
        )
        assert received["message"] == message, received


def test_a_killed_host_is_detected_and_replaced(compose: Compose) -> None:
    host_a = ready(compose, "host-a")["peer_id"]
    host_b = ready(compose, "host-b")["peer_id"]
    compose.run("kill", "host-a")
    after = {app: max((e["round"] for e in events(compose, app, "job")), default=0) for app in APPS}
    for app in APPS:
        job = eventually(
            lambda app=app: next(
                (
                    e
                    for e in events(compose, app, "job")
                    if e["round"] > after[app] and e["host"] == host_b
                ),
                None,
            ),
            timeout=60,
            what=f"{app}: a job on host-b after host-a was killed",
            logs=compose,
        )
        assert job["content"] == CONTENT, job
        later = [e for e in events(compose, app, "job") if e["round"] > job["round"]]
        assert all(e["host"] != host_a for e in later), later
