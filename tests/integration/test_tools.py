"""tools/ on real p2pd nodes: a network built from the role presets, the one-shot find and
the diagnose report, as the CLI and the gateway call them."""

from __future__ import annotations

from typing import Any

import pytest

from fabstir_sidecar.core.errors import FabstirError, NoMatchingHostError
from fabstir_sidecar.discovery.matching import HostCriteria
from fabstir_sidecar.host.backends.echo import EchoBackend
from fabstir_sidecar.host.service import HostConfig, HostService
from fabstir_sidecar.node.manager import DiscoveryManager
from fabstir_sidecar.tools.diagnose import diagnose
from fabstir_sidecar.tools.find import find_once
from fabstir_sidecar.tools.roles import role_config

pytestmark = [pytest.mark.integration, pytest.mark.anyio]

MODEL = "llama-3.2-1b-instruct"


def local(p2pd_path: str) -> dict[str, Any]:
    return {"env": {}, "p2pd_path": p2pd_path, "enable_mdns": False, "connection_timeout": 5.0}


async def test_a_preset_network_finds_its_host_and_diagnoses_its_bootstrap(
    p2pd_path: str,
) -> None:
    opts = local(p2pd_path)
    async with DiscoveryManager(role_config("bootstrap", **opts)) as boot:
        assert boot.config.max_connections == 400 and boot.config.dht_mode == "server"
        boot_addr = (await boot.get_addrs())[0]
        host_node = DiscoveryManager(role_config("host", bootstrap=[boot_addr], **opts))
        service = HostService(host_node, HostConfig(models=(MODEL,), reputation=90), EchoBackend())
        host_node.on_start(service.start)
        async with host_node:
            client = role_config("client", bootstrap=[boot_addr], **opts)
            ranked = await find_once(client, HostCriteria(required_models=(MODEL,)), timeout=30)
            assert [m.host.peer_id for m in ranked] == [host_node.peer_id]
            with pytest.raises(NoMatchingHostError):
                await find_once(client, HostCriteria(required_models=("other",)), timeout=30)

            report = await diagnose(client)
            assert report.ok and report.running
            assert boot.peer_id in report.connected_peers
            assert report.dht.enabled and report.to_json()["bootstrap"][0]["reachable"]


async def test_find_once_fails_fast_without_a_reachable_bootstrap_peer(p2pd_path: str) -> None:
    async with DiscoveryManager(role_config("direct", **local(p2pd_path))) as gone:
        dead = (await gone.get_addrs())[0]
    cfg = role_config("client", bootstrap=[dead], **local(p2pd_path))
    with pytest.raises(FabstirError, match="no bootstrap peer reachable"):
        await find_once(cfg, HostCriteria(), timeout=30)
    report = await diagnose(cfg)
    assert not report.ok and report.bootstrap[0].error
