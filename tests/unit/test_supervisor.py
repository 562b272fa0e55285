"""Supervisor helpers without a daemon: port pinning and the availability gate."""

from __future__ import annotations

import pytest

from fabstir_sidecar.core.errors import DaemonUnavailableError, FabstirError, NotSentError
from fabstir_sidecar.daemon.supervisor import Availability, pin_listen_ports

# ------------------------------------------------------------------ pin_listen_ports


def test_tcp_zero_becomes_actual_port() -> None:
    assert pin_listen_ports(("/ip4/127.0.0.1/tcp/0",), ("/ip4/127.0.0.1/tcp/41234",)) == (
        "/ip4/127.0.0.1/tcp/41234",
    )


def test_ws_and_tcp_kept_apart() -> None:
    configured = ("/ip4/127.0.0.1/tcp/0", "/ip4/127.0.0.1/tcp/0/ws")
    actual = ("/ip4/127.0.0.1/tcp/41000/ws", "/ip4/127.0.0.1/tcp/41001")
    assert pin_listen_ports(configured, actual) == (
        "/ip4/127.0.0.1/tcp/41001",
        "/ip4/127.0.0.1/tcp/41000/ws",
    )


def test_wildcard_with_several_matches_unchanged() -> None:
    configured = ("/ip4/0.0.0.0/tcp/0",)
    actual = ("/ip4/127.0.0.1/tcp/41000", "/ip4/10.1.2.3/tcp/41000")
    assert pin_listen_ports(configured, actual) == configured


def test_two_matches_of_the_same_shape_unchanged() -> None:
    configured = ("/ip4/127.0.0.1/tcp/0",)
    actual = ("/ip4/127.0.0.1/tcp/41000", "/ip4/127.0.0.1/tcp/41001")
    assert pin_listen_ports(configured, actual) == configured


def test_fixed_port_unchanged() -> None:
    configured = ("/ip4/127.0.0.1/tcp/4001",)
    assert pin_listen_ports(configured, ("/ip4/127.0.0.1/tcp/4001",)) == configured


def test_no_match_unchanged() -> None:
    configured = ("/ip4/127.0.0.1/tcp/0",)
    assert pin_listen_ports(configured, ("/ip6/::1/tcp/41000",)) == configured
    assert pin_listen_ports(configured, ()) == configured


def test_udp_zero_pinned() -> None:
    configured = ("/ip4/127.0.0.1/udp/0/quic-v1", "/ip4/127.0.0.1/tcp/0")
    actual = ("/ip4/127.0.0.1/tcp/5000", "/ip4/127.0.0.1/udp/5001/quic-v1")
    assert pin_listen_ports(configured, actual) == (
        "/ip4/127.0.0.1/udp/5001/quic-v1",
        "/ip4/127.0.0.1/tcp/5000",
    )


def test_order_and_length_preserved() -> None:
    configured = ("/ip4/127.0.0.1/tcp/0/ws", "/ip4/0.0.0.0/tcp/0", "/ip4/127.0.0.1/tcp/0")
    actual = (
        "/ip4/127.0.0.1/tcp/7001",
        "/ip4/127.0.0.1/tcp/7000/ws",
        "/ip4/192.168.1.2/tcp/7002",
    )
    pinned = pin_listen_ports(configured, actual)
    assert len(pinned) == 3
    assert pinned[0] == "/ip4/127.0.0.1/tcp/7000/ws"
    assert pinned[1] == "/ip4/0.0.0.0/tcp/0"
    assert pinned[2] == "/ip4/127.0.0.1/tcp/7001"


# --------------------------------------------------------------------- Availability


def test_new_availability_is_down() -> None:
    availability = Availability()
    assert not availability.available
    assert availability.reason
    with pytest.raises(DaemonUnavailableError):
        availability.check()


def test_up_then_check_passes() -> None:
    availability = Availability()
    availability.up()
    assert availability.available
    assert availability.reason is None
    availability.check()


def test_down_raises_with_reason() -> None:
    availability = Availability()
    availability.up()
    availability.down("p2pd (pid 7) exited with code -9; restarting it")
    assert not availability.available
    with pytest.raises(DaemonUnavailableError) as info:
        availability.check()
    assert "exited with code -9" in str(info.value)
    assert isinstance(info.value, NotSentError)
    assert isinstance(info.value, FabstirError)


def test_down_then_up_recovers() -> None:
    availability = Availability()
    availability.up()
    availability.down("restarting")
    availability.up()
    assert availability.available
    availability.check()


def test_permanent_down_cannot_come_back() -> None:
    availability = Availability()
    availability.up()
    availability.down("restart is disabled", permanent=True)
    availability.up()
    assert not availability.available
    with pytest.raises(DaemonUnavailableError, match="restart is disabled"):
        availability.check()


def test_permanent_sticks_across_later_reasons() -> None:
    availability = Availability()
    availability.down("gave up", permanent=True)
    availability.down("node is stopping")  # not permanent itself, but it already is
    availability.up()
    assert not availability.available
    with pytest.raises(DaemonUnavailableError, match="node is stopping"):
        availability.check()
