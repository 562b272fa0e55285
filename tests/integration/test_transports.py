"""QUIC-v1, WebSocket and WebTransport end to end on loopback: a host listening on only that
transport, a client dialing it, the connection really on that transport (LIST_PEERS), and
a streamed job plus a status request over it."""

from __future__ import annotations

import anyio
import pytest

from fabstir_sidecar.client import FabstirClient, RetryConfig
from fabstir_sidecar.host.backends.echo import EchoBackend
from fabstir_sidecar.host.service import HostConfig, HostService
from tests.integration.helpers import make_node

pytestmark = [pytest.mark.integration, pytest.mark.anyio]

MODEL = "llama-3.2-1b-instruct"

TRANSPORTS = {
    "quic-v1": "/ip4/127.0.0.1/udp/0/quic-v1",
    "ws": "/ip4/127.0.0.1/tcp/0/ws",
    "webtransport": "/ip4/127.0.0.1/udp/0/quic-v1/webtransport",
}


@pytest.mark.parametrize("transport", list(TRANSPORTS))
async def test_streamed_job_over_transport(p2pd_path: str, transport: str) -> None:
    listen = TRANSPORTS[transport]
    with anyio.fail_after(30):
        async with (
            make_node(p2pd_path, listen=[listen]) as host_node,
            make_node(p2pd_path, listen=[listen]) as client_node,
        ):
            service = HostService(host_node, HostConfig(models=(MODEL,)), EchoBackend())
            await service.start()
            addrs = await host_node.get_addrs()
            assert addrs, "the host has no address"
            assert all(f"/{transport}/" in a for a in addrs), addrs
            client = FabstirClient(client_node, retry=RetryConfig.none(), job_timeout=10.0)

            stream = client.stream_job(addrs[0], MODEL, "over " + transport)
            tokens = [token async for token in stream]
            assert "".join(tokens) == f"echo: over {transport}"

            peers = {str(p.peer_id): p.addrs for p in await client_node.control.list_peers()}
            used = peers[str(host_node.peer_id)]
            assert used and all(f"/{transport}" in a for a in used), used
            status = await client.get_status(str(host_node.peer_id))
            assert status.host.models == (MODEL,)


async def test_mixed_listen_set_each_transport_dialed(p2pd_path: str) -> None:
    """A host listening on TCP, QUIC and WebSocket at once: a client that knows only the
    QUIC address gets there over QUIC, one with only the WebSocket address over WebSocket."""
    listen = [TRANSPORTS["quic-v1"], TRANSPORTS["ws"], "/ip4/127.0.0.1/tcp/0"]
    with anyio.fail_after(30):
        async with make_node(p2pd_path, listen=listen) as host_node:
            service = HostService(host_node, HostConfig(models=(MODEL,)), EchoBackend())
            await service.start()
            addrs = await host_node.get_addrs()
            for transport in ("quic-v1", "ws"):
                target = next(a for a in addrs if f"/{transport}/" in a)
                async with make_node(p2pd_path) as client_node:
                    client = FabstirClient(client_node, retry=RetryConfig.none())
                    result = await client.run_job(target, MODEL, "mixed")
                    assert result.content == "echo: mixed"
                    peers = {
                        str(p.peer_id): p.addrs for p in await client_node.control.list_peers()
                    }
                    assert any(f"/{transport}" in a for a in peers[str(host_node.peer_id)])
