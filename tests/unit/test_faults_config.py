"""Bad values a user types (issue 11, item 7): caught by validation, reported in their unit."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from fabstir_sidecar.cli.app import app
from fabstir_sidecar.core.errors import ConfigError
from fabstir_sidecar.core.settings import NodeConfig

PEER = "/ip4/127.0.0.1/tcp/1/p2p/12D3KooWRnPrTgtPSGfUv8CgFkMUmgjTAGtEGXey1b1jAsoK6Dn6"


@pytest.mark.parametrize("raw", ["99999999999999999999", str(2**63)])
def test_max_connections_beyond_what_p2pd_accepts_is_refused(raw: str) -> None:
    with pytest.raises(ConfigError) as caught:
        NodeConfig.load(env={"P2P_MAX_CONNECTIONS": raw})
    assert caught.value.name == "P2P_MAX_CONNECTIONS"
    assert "<=" in caught.value.reason


def test_max_connections_at_the_int64_limit_is_accepted() -> None:
    assert NodeConfig(max_connections=2**63 - 1).max_connections == 2**63 - 1
    with pytest.raises(ConfigError):
        NodeConfig(max_connections=2**63)
    with pytest.raises(ConfigError):
        NodeConfig(min_connections=2**63, max_connections=2**63)


def test_negative_connection_timeout_is_reported_in_milliseconds() -> None:
    result = CliRunner().invoke(app, ["status", PEER, "--connection-timeout", "-5"])
    assert result.exit_code == 2, result.output
    assert "--connection-timeout" in result.output
    assert "-5" in result.output and "millisecond" in result.output
    assert "-0.005" not in result.output


def test_unknown_log_level_is_a_usage_error() -> None:
    result = CliRunner().invoke(app, ["--log-level", "bogus", "status", PEER])
    assert result.exit_code == 2, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert "bogus" in result.output
    assert "Traceback" not in result.output
