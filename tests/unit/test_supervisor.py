"""Supervisor helpers without a daemon: port pinning and the availability gate."""

from __future__ import annotations

import anyio
import pytest

from fabstir_sidecar.core.errors import DaemonUnavailableError, FabstirError, NotSentError
from fabstir_sidecar.daemon.supervisor import Availability, pin_listen_ports

# ------------------------------------------------------------------ pin_listen_ports


L = "/ip4/127.0.0.1"


@pytest.mark.parametrize(
    ("configured", "actual", "pinned"),
    [
        pytest.param((f"{L}/tcp/0",), (f"{L}/tcp/41234",), (f"{L}/tcp/41234",), id="tcp-zero"),
        pytest.param(
            (f"{L}/tcp/0", f"{L}/tcp/0/ws"),
            (f"{L}/tcp/41000/ws", f"{L}/tcp/41001"),
            (f"{L}/tcp/41001", f"{L}/tcp/41000/ws"),
            id="ws-and-tcp-kept-apart",
        ),
        pytest.param(
            (f"{L}/udp/0/quic-v1", f"{L}/tcp/0"),
            (f"{L}/tcp/5000", f"{L}/udp/5001/quic-v1"),
            (f"{L}/udp/5001/quic-v1", f"{L}/tcp/5000"),
            id="udp-zero",
        ),
        # Unchanged: ambiguous, fixed or unmatched.
        pytest.param(
            ("/ip4/0.0.0.0/tcp/0",),
            (f"{L}/tcp/41000", "/ip4/10.1.2.3/tcp/41000"),
            None,
            id="wildcard-with-several-matches",
        ),
        pytest.param(
            (f"{L}/tcp/0",),
            (f"{L}/tcp/41000", f"{L}/tcp/41001"),
            None,
            id="two-matches-of-the-same-shape",
        ),
        pytest.param((f"{L}/tcp/4001",), (f"{L}/tcp/4001",), None, id="fixed-port"),
        pytest.param((f"{L}/tcp/0",), ("/ip6/::1/tcp/41000",), None, id="no-match"),
        pytest.param((f"{L}/tcp/0",), (), None, id="nothing-listening"),
    ],
)
def test_pin_listen_ports(
    configured: tuple[str, ...], actual: tuple[str, ...], pinned: tuple[str, ...] | None
) -> None:
    assert pin_listen_ports(configured, actual) == (configured if pinned is None else pinned)


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


@pytest.mark.parametrize(
    ("downs", "reason"),
    [
        pytest.param([("restart is disabled", True)], "restart is disabled", id="permanent"),
        # A later reason that is not permanent itself: the state already is.
        pytest.param(
            [("gave up", True), ("node is stopping", False)], "node is stopping", id="sticks"
        ),
    ],
)
def test_permanent_down_cannot_come_back(downs: list[tuple[str, bool]], reason: str) -> None:
    availability = Availability()
    availability.up()
    for text, permanent in downs:
        availability.down(text, permanent=permanent)
    availability.up()
    assert not availability.available
    with pytest.raises(DaemonUnavailableError, match=reason):
        availability.check()


def test_a_failure_is_final_and_kept_through_the_stop() -> None:
    availability = Availability()
    availability.up()
    assert availability.failure is None
    availability.fail("gave up after 5 restarts")
    availability.fail("a later reason")
    availability.down("node is stopping", permanent=True)
    availability.up()
    assert not availability.available
    assert availability.failure == "gave up after 5 restarts"


def test_a_stop_is_no_failure() -> None:
    availability = Availability()
    availability.up()
    availability.down("node is stopping", permanent=True)
    assert availability.failure is None


@pytest.mark.anyio
async def test_waiting_for_a_failure() -> None:
    availability = Availability()
    availability.up()
    async with anyio.create_task_group() as tg:
        got: list[str] = []

        async def wait() -> None:
            got.append(await availability.wait_failed())

        tg.start_soon(wait)
        await anyio.sleep(0.01)
        assert not got
        availability.fail("restart failed")
    assert got == ["restart failed"]
    with anyio.fail_after(1):
        assert await availability.wait_failed() == "restart failed"
