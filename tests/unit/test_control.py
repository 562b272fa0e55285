"""DaemonControl's checks before any socket is opened."""

from __future__ import annotations

import pytest

from fabstir_sidecar.core.errors import ConfigError, DaemonUnavailableError, FabstirError
from fabstir_sidecar.daemon.control import DaemonControl


@pytest.mark.parametrize(
    "addr", ["/unix/tmp/p2pd.sock", "/ip4/127.0.0.1/tcp/5000", "/ip6/::1/tcp/5000"]
)
def test_accepts_unix_and_tcp_control_addresses(addr: str) -> None:
    assert DaemonControl(addr).control_addr == addr


@pytest.mark.parametrize(
    "addr", ["", "/ip4/127.0.0.1/udp/5000", "/ip4/127.0.0.1", "/dns4/localhost/tcp/1", "nonsense"]
)
def test_rejects_other_control_addresses(addr: str) -> None:
    with pytest.raises(ConfigError) as info:
        DaemonControl(addr)
    assert info.value.name == "control_addr"


@pytest.mark.parametrize("peer_id", ["", "not a peer id", "/ip4/127.0.0.1/tcp/1", "12D3KooW"])
@pytest.mark.anyio
async def test_bad_peer_ids_fail_before_any_request(peer_id: str) -> None:
    # The gate would raise if a request were attempted: validation must come first.
    def gate() -> None:
        raise DaemonUnavailableError("no request may be sent")

    control = DaemonControl("/unix/nonexistent/p2pd.sock", gate=gate)
    for call in (
        control.connect(peer_id, []),
        control.disconnect(peer_id),
        control.open_stream(peer_id, ["/p/1"]),
    ):
        with pytest.raises(ConfigError) as info:
            await call
        assert isinstance(info.value, FabstirError)
        assert info.value.name == "peer_id"


@pytest.mark.anyio
async def test_the_gate_is_asked_before_each_request() -> None:
    def gate() -> None:
        raise DaemonUnavailableError("daemon is restarting")

    control = DaemonControl("/unix/nonexistent/p2pd.sock", gate=gate)
    with pytest.raises(DaemonUnavailableError, match="restarting"):
        await control.list_peers()


@pytest.mark.anyio
async def test_a_missing_control_socket_is_daemon_unavailable() -> None:
    control = DaemonControl("/unix/nonexistent-dir-fabstir/p2pd.sock")
    with pytest.raises(DaemonUnavailableError, match="cannot reach p2pd control socket"):
        await control.identify()
