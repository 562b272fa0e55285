"""Role presets: what each role pins and defaults, and the precedence rules."""

from __future__ import annotations

import pytest

from fabstir_sidecar.core.errors import ConfigError
from fabstir_sidecar.core.settings import NodeConfig
from fabstir_sidecar.core.validate import seconds_from_millis
from fabstir_sidecar.tools.roles import (
    BOOTSTRAP_MAX_CONNECTIONS,
    PRESETS,
    ROLES,
    Role,
    role_config,
)


def test_every_role_has_a_preset() -> None:
    assert set(PRESETS) == set(ROLES) == {"bootstrap", "host", "client", "direct"}
    for name, preset in PRESETS.items():
        assert preset.name == name and preset.summary


def test_bootstrap_is_a_dht_server_with_many_connections() -> None:
    cfg = role_config("bootstrap", env={})
    assert cfg.enable_dht and cfg.dht_mode == "server"
    assert cfg.max_connections == BOOTSTRAP_MAX_CONNECTIONS == 400


@pytest.mark.parametrize("role", ["host", "client"])
def test_host_and_client_keep_the_library_defaults(role: Role) -> None:
    assert role_config(role, env={}) == NodeConfig()


def test_direct_has_no_dht() -> None:
    assert role_config("direct", env={}) == NodeConfig(enable_dht=False)


def test_the_environment_beats_a_preset_default_but_not_a_pinned_value() -> None:
    env = {"P2P_MAX_CONNECTIONS": "33", "P2P_DHT_MODE": "client", "P2P_ENABLE_DHT": "false"}
    cfg = role_config("bootstrap", env=env)
    assert cfg.max_connections == 33
    assert cfg.dht_mode == "server" and cfg.enable_dht


def test_explicit_options_beat_everything_and_none_means_not_given() -> None:
    env = {"P2P_MAX_CONNECTIONS": "33"}
    cfg = role_config("bootstrap", env=env, max_connections=55, dht_mode="client")
    assert cfg.max_connections == 55 and cfg.dht_mode == "client"
    cfg = role_config("bootstrap", env=env, max_connections=None, dht_mode=None)
    assert cfg.max_connections == 33 and cfg.dht_mode == "server"
    assert role_config("direct", env={}, enable_dht=True).enable_dht


def test_environment_errors_name_the_variable() -> None:
    with pytest.raises(ConfigError, match="P2P_MAX_CONNECTIONS"):
        role_config("bootstrap", env={"P2P_MAX_CONNECTIONS": "0"})


def test_unknown_role_and_unknown_options_are_rejected() -> None:
    with pytest.raises(ConfigError, match="role"):
        role_config("relay", env={})  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="bogus"):
        role_config("host", env={}, bogus=1)


def test_load_defaults_sit_below_the_environment() -> None:
    assert NodeConfig.load(env={}, defaults={"max_connections": 7}).max_connections == 7
    env = {"P2P_MAX_CONNECTIONS": "8"}
    assert NodeConfig.load(env=env, defaults={"max_connections": 7}).max_connections == 8
    with pytest.raises(TypeError, match="bogus"):
        NodeConfig.load(env={}, defaults={"bogus": 1})
    with pytest.raises(ConfigError, match="max_connections"):
        NodeConfig.load(env={}, defaults={"max_connections": 0})


def test_seconds_from_millis() -> None:
    assert seconds_from_millis(None) is None
    assert seconds_from_millis(1500) == 1.5
    assert role_config("direct", env={}, connection_timeout=seconds_from_millis(250)) == (
        NodeConfig(enable_dht=False, connection_timeout=0.25)
    )
