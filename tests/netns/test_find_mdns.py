"""End to end across namespaces: a client finds a host it was never told about, by mDNS.

The host runs ``fabstir-sidecar host`` in one namespace, the client ``fabstir-sidecar find``
in another, both with mDNS on and listening on their namespace's LAN address; nothing
bootstraps them. The DHT is off so mDNS is the only way the client can learn of the host.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import Lan, Proc, assert_namespaces_empty

pytestmark = [pytest.mark.netns, pytest.mark.integration]

CLI = str(Path(sys.executable).parent / "fabstir-sidecar")


def test_find_discovers_host_by_mdns(lan: Lan, p2pd_path: str, tmp_path: Path) -> None:
    host_ns, client_ns = lan.hosts["a"], lan.hosts["b"]
    env = {**os.environ, "P2PD_BIN": p2pd_path, "P2P_ENABLE_MDNS": "true"}
    old_env = dict(os.environ)
    os.environ.update(env)  # Proc inherits the environment
    try:
        host = Proc(
            "host",
            host_ns.ns,
            [
                CLI,
                "host",
                "--json",
                "--model",
                "netns-model",
                "--reputation",
                "77",
                "--no-dht",
                "--listen",
                f"/ip4/{host_ns.ip}/tcp/4101",
            ],
            tmp_path,
        )
    finally:
        os.environ.clear()
        os.environ.update(old_env)
    try:
        ready = host.wait_for(lambda e: e.get("event") == "ready", timeout=20)
        result = subprocess.run(
            [
                "ip",
                "netns",
                "exec",
                client_ns.ns,
                CLI,
                "find",
                "--json",
                "--model",
                "netns-model",
                "--timeout",
                "20",
                "--listen",
                f"/ip4/{client_ns.ip}/tcp/0",
            ],
            env={**env, "P2P_ENABLE_DHT": "false"},
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 0, result.stderr
        found = json.loads(result.stdout)
        assert found["peer_id"] == ready["peer_id"]
        assert found["reputation"] == 77
        assert found["models"] == ["netns-model"]
    finally:
        assert host.stop() == 0, host.stderr()
    assert_namespaces_empty(lan)
