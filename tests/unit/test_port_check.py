"""A fixed TCP port something listens on is refused before p2pd starts (go-libp2p's
SO_REUSEPORT would let a second daemon share it); port 0, UDP and free ports pass."""

from __future__ import annotations

import socket

import pytest

from fabstir_sidecar.core.errors import DaemonStartError
from fabstir_sidecar.daemon.process import check_tcp_ports_free


def test_a_port_something_listens_on_is_refused() -> None:
    with socket.socket() as taken:
        taken.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)  # as go-libp2p binds
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(DaemonStartError, match="port already in use"):
            check_tcp_ports_free([f"/ip4/127.0.0.1/tcp/{port}"])


def test_free_ports_port_zero_and_udp_pass() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        free = probe.getsockname()[1]
    check_tcp_ports_free(
        [f"/ip4/127.0.0.1/tcp/{free}", "/ip4/127.0.0.1/tcp/0", "/ip4/127.0.0.1/udp/1/quic-v1"]
    )
