"""``fabstir-sidecar gateway`` as a real subprocess: the ready line, auth rules at start."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import httpx
import pytest

from tests.integration.cli_helpers import Running, cli_env, run_cli

pytestmark = pytest.mark.integration

START = 30.0


def launch(env: dict[str, str], *args: str) -> Running:
    running = Running.launch(env, "gateway", "--json", "--http", "127.0.0.1:0", *args)
    line = running.stdout.first(START)
    running.ready = json.loads(line)
    return running


def stop(running: Running) -> int:
    running.proc.send_signal(signal.SIGTERM)
    try:
        return running.proc.wait(15)
    finally:
        if running.proc.poll() is None:
            running.proc.kill()
            running.proc.wait(5)


def test_ready_line_once_http_accepts_then_sigterm_exits_0(p2pd_path: str) -> None:
    running = launch(cli_env(p2pd_path))
    try:
        ready = running.ready
        assert ready["event"] == "ready" and set(ready) == {"event", "peer_id", "addrs", "http"}
        assert ready["addrs"][0].endswith("/p2p/" + ready["peer_id"])
        assert ready["http"].startswith("http://127.0.0.1:") and not ready["http"].endswith(":0")
        # Printed only once HTTP accepts: the very first request is answered.
        r = httpx.get(ready["http"] + "/health", timeout=5)
        assert r.status_code == 200 and r.json()["status"] == "degraded"  # no peer yet
        node = httpx.get(ready["http"] + "/v1/node", timeout=5).json()
        assert node["peer_id"] == ready["peer_id"]
    finally:
        assert stop(running) == 0


def test_token_file_and_env(p2pd_path: str, tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("  from-file\n")
    env = cli_env(p2pd_path, FABSTIR_GATEWAY_TOKEN="from-env")
    running = launch(env, "--token-file", str(token_file))
    try:
        url = running.ready["http"]
        assert httpx.get(url + "/v1/node", timeout=5).status_code == 401
        ok = httpx.get(url + "/v1/node", headers={"Authorization": "Bearer from-file"}, timeout=5)
        assert ok.status_code == 200  # the flag wins over the environment
        env_only = httpx.get(url + "/v1/node", headers={"Authorization": "Bearer from-env"})
        assert env_only.status_code == 401
    finally:
        assert stop(running) == 0
    running = launch(env)
    try:
        headers = {"Authorization": "Bearer from-env"}
        assert httpx.get(running.ready["http"] + "/v1/node", headers=headers).status_code == 200
    finally:
        assert stop(running) == 0


def test_non_loopback_without_token_is_refused(p2pd_path: str, tmp_path: Path) -> None:
    result = run_cli(cli_env(p2pd_path), "gateway", "--http", "0.0.0.0:0", timeout=30)
    assert result.returncode == 2
    assert "--token-file" in result.stderr and result.stdout == ""


def test_empty_token_is_an_error(p2pd_path: str, tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.write_text(" \n")
    result = run_cli(cli_env(p2pd_path), "gateway", "--token-file", str(empty), timeout=30)
    assert result.returncode == 2 and "token" in result.stderr
    env = cli_env(p2pd_path, FABSTIR_GATEWAY_TOKEN="  ")
    result = run_cli(env, "gateway", timeout=30)
    assert result.returncode == 2 and "FABSTIR_GATEWAY_TOKEN" in result.stderr


def test_bad_http_address_is_exit_2(p2pd_path: str) -> None:
    result = run_cli(cli_env(p2pd_path), "gateway", "--http", "localhost", timeout=30)
    assert result.returncode == 2 and "HOST:PORT" in result.stderr
