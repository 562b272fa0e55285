"""The TCP pre-probe that keeps p2pd out of dial backoff (daemon/dialguard.py)."""

from __future__ import annotations

import socket

import pytest

from fabstir_sidecar.core.multiaddr import tcp_endpoint, tcp_host_port, tcp_listen_port
from fabstir_sidecar.daemon.dialguard import probe


@pytest.mark.parametrize(
    ("addr", "target"),
    [
        ("/ip4/127.0.0.1/tcp/4001", ("127.0.0.1", 4001)),
        ("/ip6/::1/tcp/4001", ("::1", 4001)),
        ("/dns4/example.org/tcp/443/wss", ("example.org", 443)),
        ("/ip4/1.2.3.4/udp/4001/quic-v1", None),
        (
            "/ip4/1.2.3.4/tcp/4001/p2p/12D3KooWRnPrTgtPSGfUv8CgFkMUmgjTAGtEGXey1b1jAsoK6Dn6/p2p-circuit",
            None,
        ),
        ("/unix/tmp/x.sock", None),
        ("not a multiaddr", None),
    ],
)
def test_tcp_endpoint(addr: str, target: tuple[str, int] | None) -> None:
    assert tcp_endpoint(addr) == target


def test_control_and_listen_shapes() -> None:
    assert tcp_host_port("/ip4/127.0.0.1/tcp/5") == ("127.0.0.1", 5)
    assert tcp_host_port("/ip4/127.0.0.1/tcp/5/ws") is None  # a control address is exact
    assert tcp_host_port("/dns4/localhost/tcp/5") is None
    assert tcp_listen_port("/ip4/0.0.0.0/tcp/4001/ws") == ("0.0.0.0", 4001)
    assert tcp_listen_port("/ip4/127.0.0.1/tcp/0") is None  # any port: nothing to check
    assert tcp_listen_port("/dns4/example.org/tcp/4001") is None


@pytest.mark.anyio
async def test_probe_tells_a_listening_port_from_a_closed_one() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        assert await probe([f"/ip4/127.0.0.1/tcp/{port}"], 1.0) is True
    assert await probe([f"/ip4/127.0.0.1/tcp/{port}"], 1.0) is False
    assert await probe(["/ip4/127.0.0.1/udp/1/quic-v1"], 1.0) is None
    assert await probe([], 1.0) is None
