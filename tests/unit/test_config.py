"""Unit tests for fabstir_sidecar.core.settings (no network, no daemon)."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from multiaddr import Multiaddr

from fabstir_sidecar.core.errors import ConfigError, FabstirError, InvalidMultiaddrError
from fabstir_sidecar.core.multiaddr import parse_multiaddr, split_peer_multiaddr
from fabstir_sidecar.core.nat_options import NAT_ENV_VARS
from fabstir_sidecar.core.peer_id import PeerId, b58encode
from fabstir_sidecar.core.settings import DEFAULT_LISTEN, ENV_VARS, NodeConfig

PEER_ED25519 = "12D3KooWD3eckifWpRn9wQpMG9R9hX3sD158z7EqHWmweQAJU5SA"
PEER_RSA = "QmYyQSo1c1Ym7orWxLYvCrM2EmxFTANf8wXmmE7DWjhx5N"
BOOT_1 = f"/ip4/10.0.0.1/tcp/4001/p2p/{PEER_ED25519}"
BOOT_2 = f"/ip6/::1/tcp/4002/p2p/{PEER_RSA}"


def load(env: dict[str, str] | None = None, **overrides: Any) -> NodeConfig:
    return NodeConfig.load(env=env or {}, **overrides)


def expect_config_error(exc: pytest.ExceptionInfo[ConfigError], name: str, value: object) -> None:
    """The error (and its message) names ``name`` and shows ``value``."""
    assert exc.value.name == name
    assert exc.value.value == value
    message = str(exc.value)
    assert message.startswith(f"invalid {name}={value!r}: ")
    assert exc.value.reason


# ------------------------------------------------------------------------ errors


def test_config_error_is_value_error() -> None:
    assert issubclass(ConfigError, ValueError)
    assert issubclass(ConfigError, FabstirError)
    assert issubclass(InvalidMultiaddrError, ConfigError)
    with pytest.raises(ValueError):
        NodeConfig(max_connections=0)


# ---------------------------------------------------------------------- defaults


def test_defaults() -> None:
    cfg = NodeConfig()
    assert cfg.listen == DEFAULT_LISTEN == ("/ip4/127.0.0.1/tcp/0",)
    assert cfg.bootstrap == ()
    assert cfg.announce == ()
    assert cfg.enable_dht is True
    assert cfg.dht_mode == "auto"
    assert cfg.enable_mdns is True
    assert cfg.max_connections == 10
    assert cfg.min_connections == 0
    assert cfg.connection_timeout == 30.0
    assert cfg.protocol_prefix == "/fabstir-llm/1.0.0"
    assert cfg.message_protocol == "/fabstir-llm/1.0.0/message"
    assert cfg.max_message_size == 1_048_576
    assert cfg.identity_file is None
    assert cfg.p2pd_path is None
    assert cfg.control_addr is None
    assert cfg.daemon_start_timeout == 10.0
    assert cfg.daemon_stop_grace == 3.0
    assert cfg.message_linger == 0.5
    assert cfg.restart_daemon is True


def test_load_with_empty_env_equals_defaults() -> None:
    assert load({}) == NodeConfig()


def test_load_reads_os_environ_when_env_is_none(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ENV_VARS:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("P2P_MAX_CONNECTIONS", "42")
    assert NodeConfig.load().max_connections == 42


def test_env_vars_documented() -> None:
    assert set(ENV_VARS) == {
        "P2P_LISTEN_ADDRESSES",
        "P2P_BOOTSTRAP_NODES",
        "P2P_ENABLE_DHT",
        "P2P_DHT_MODE",
        "P2P_ENABLE_MDNS",
        "P2P_MAX_CONNECTIONS",
        "P2P_CONNECTION_TIMEOUT",
        "P2P_IDENTITY_FILE",
        "P2P_DAEMON_ADDR",
        "P2P_DATA_DIR",
        "P2P_DAEMON",
        "P2P_DAEMON_IMAGE",
        "P2P_HANDLER_ADDR",
        *NAT_ENV_VARS,  # tests/unit/test_nat_config.py
    }
    assert all(isinstance(text, str) and text and "\n" not in text for text in ENV_VARS.values())


def test_frozen_hashable_and_tuples() -> None:
    cfg = NodeConfig(listen=["/ip4/0.0.0.0/tcp/4001"], bootstrap=[BOOT_1])  # type: ignore[arg-type]
    assert cfg.listen == ("/ip4/0.0.0.0/tcp/4001",)
    assert cfg.bootstrap == (BOOT_1,)
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.max_connections = 5  # type: ignore[misc]
    assert hash(cfg) == hash(NodeConfig(listen=("/ip4/0.0.0.0/tcp/4001",), bootstrap=(BOOT_1,)))


# --------------------------------------------------------------- env var parsing


@pytest.mark.parametrize(
    ("var", "raw", "field", "expected"),
    [
        (
            "P2P_LISTEN_ADDRESSES",
            '["/ip4/0.0.0.0/tcp/4001", "/ip4/0.0.0.0/udp/4001/quic-v1"]',
            "listen",
            ("/ip4/0.0.0.0/tcp/4001", "/ip4/0.0.0.0/udp/4001/quic-v1"),
        ),
        ("P2P_LISTEN_ADDRESSES", "[]", "listen", ()),
        ("P2P_BOOTSTRAP_NODES", json.dumps([BOOT_1, BOOT_2]), "bootstrap", (BOOT_1, BOOT_2)),
        ("P2P_ENABLE_DHT", "false", "enable_dht", False),
        ("P2P_DHT_MODE", "server", "dht_mode", "server"),
        ("P2P_DHT_MODE", " Client ", "dht_mode", "client"),
        ("P2P_ENABLE_MDNS", "off", "enable_mdns", False),
        ("P2P_MAX_CONNECTIONS", "50", "max_connections", 50),
        ("P2P_CONNECTION_TIMEOUT", "5000", "connection_timeout", 5.0),
        (
            "P2P_IDENTITY_FILE",
            "/var/lib/fabstir/key",
            "identity_file",
            Path("/var/lib/fabstir/key"),
        ),
        ("P2P_DAEMON_ADDR", "/unix/tmp/p2pd.sock", "control_addr", "/unix/tmp/p2pd.sock"),
        ("P2P_DAEMON_ADDR", "/ip4/127.0.0.1/tcp/5001", "control_addr", "/ip4/127.0.0.1/tcp/5001"),
    ],
)
def test_env_var_parsed(var: str, raw: str, field: str, expected: object) -> None:
    assert getattr(load({var: raw}), field) == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        *[(word, True) for word in ("true", "TRUE", "True", "1", "yes", "YES", "on", " On ")],
        *[(word, False) for word in ("false", "FALSE", "0", "no", "No", "off", "OFF")],
    ],
)
@pytest.mark.parametrize(
    ("var", "field"), [("P2P_ENABLE_DHT", "enable_dht"), ("P2P_ENABLE_MDNS", "enable_mdns")]
)
def test_env_bool_spellings(var: str, field: str, raw: str, expected: bool) -> None:
    assert getattr(load({var: raw}), field) is expected


def test_identity_file_expands_user(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", "/home/tester")
    assert load({"P2P_IDENTITY_FILE": "~/key"}).identity_file == Path("/home/tester/key")


def test_empty_env_var_counts_as_unset() -> None:
    assert load({var: "" for var in ENV_VARS}) == NodeConfig()
    assert load({"P2P_MAX_CONNECTIONS": "   "}).max_connections == 10


def test_unrelated_env_ignored() -> None:
    assert load({"P2PD_BIN": "/opt/p2pd", "P2P_SOMETHING_ELSE": "x"}) == NodeConfig()


@pytest.mark.parametrize(
    ("raw", "seconds"),
    [("1", 0.001), ("1500", 1.5), ("250.5", 0.2505), ("30000", 30.0), ("1e3", 1.0)],
)
def test_connection_timeout_milliseconds_to_seconds(raw: str, seconds: float) -> None:
    cfg = load({"P2P_CONNECTION_TIMEOUT": raw})
    assert cfg.connection_timeout == pytest.approx(seconds)
    assert isinstance(cfg.connection_timeout, float)


def test_connection_timeout_override_is_seconds() -> None:
    assert load({"P2P_CONNECTION_TIMEOUT": "1000"}, connection_timeout=7).connection_timeout == 7.0


# -------------------------------------------------------------------- precedence


def test_override_beats_env_beats_default() -> None:
    env = {"P2P_MAX_CONNECTIONS": "20", "P2P_DHT_MODE": "client"}
    assert NodeConfig().max_connections == 10
    assert load(env).max_connections == 20
    assert load(env, max_connections=30).max_connections == 30
    assert load(env, dht_mode="server").dht_mode == "server"


def test_none_override_does_not_override() -> None:
    env = {
        "P2P_MAX_CONNECTIONS": "20",
        "P2P_LISTEN_ADDRESSES": '["/ip4/0.0.0.0/tcp/4001"]',
        "P2P_DAEMON_ADDR": "/unix/tmp/p2pd.sock",
    }
    cfg = load(env, max_connections=None, listen=None, control_addr=None, enable_dht=None)
    assert cfg.max_connections == 20
    assert cfg.listen == ("/ip4/0.0.0.0/tcp/4001",)
    assert cfg.control_addr == "/unix/tmp/p2pd.sock"
    assert cfg.enable_dht is True
    # None for a field without an env var keeps the default.
    assert load({}, protocol_prefix=None).protocol_prefix == "/fabstir-llm/1.0.0"


def test_empty_list_override_is_applied() -> None:
    env = {
        "P2P_LISTEN_ADDRESSES": '["/ip4/0.0.0.0/tcp/4001"]',
        "P2P_BOOTSTRAP_NODES": json.dumps([BOOT_1]),
    }
    cfg = load(env, listen=[], bootstrap=())
    assert cfg.listen == ()
    assert cfg.bootstrap == ()


def test_false_override_is_applied() -> None:
    cfg = load({"P2P_ENABLE_DHT": "true"}, enable_dht=False, enable_mdns=False)
    assert cfg.enable_dht is False
    assert cfg.enable_mdns is False


def test_overrides_accept_any_sequence() -> None:
    cfg = load(
        listen=["/ip4/0.0.0.0/tcp/1"], bootstrap=(BOOT_1,), announce=["/dns4/a.example/tcp/1"]
    )
    assert cfg.listen == ("/ip4/0.0.0.0/tcp/1",)
    assert cfg.bootstrap == (BOOT_1,)
    assert cfg.announce == ("/dns4/a.example/tcp/1",)


def test_unknown_override_is_type_error() -> None:
    with pytest.raises(TypeError, match="max_conections"):
        load(max_conections=5)


def test_error_from_override_names_option_not_env_var() -> None:
    with pytest.raises(ConfigError) as exc:
        load({"P2P_MAX_CONNECTIONS": "20"}, max_connections=0)
    expect_config_error(exc, "max_connections", 0)


# ------------------------------------------------------------- invalid from env


@pytest.mark.parametrize(
    ("env", "name", "value"),
    [
        # bad JSON
        (
            {"P2P_LISTEN_ADDRESSES": "/ip4/0.0.0.0/tcp/1"},
            "P2P_LISTEN_ADDRESSES",
            "/ip4/0.0.0.0/tcp/1",
        ),
        ({"P2P_BOOTSTRAP_NODES": "[oops"}, "P2P_BOOTSTRAP_NODES", "[oops"),
        # JSON but not a list
        (
            {"P2P_LISTEN_ADDRESSES": '"/ip4/0.0.0.0/tcp/1"'},
            "P2P_LISTEN_ADDRESSES",
            '"/ip4/0.0.0.0/tcp/1"',
        ),
        ({"P2P_BOOTSTRAP_NODES": '{"a": 1}'}, "P2P_BOOTSTRAP_NODES", '{"a": 1}'),
        # list with a non-string
        ({"P2P_LISTEN_ADDRESSES": '["/ip4/0.0.0.0/tcp/1", 5]'}, "P2P_LISTEN_ADDRESSES[1]", 5),
        ({"P2P_BOOTSTRAP_NODES": "[null]"}, "P2P_BOOTSTRAP_NODES[0]", None),
        # bad multiaddr
        ({"P2P_LISTEN_ADDRESSES": '["garbage"]'}, "P2P_LISTEN_ADDRESSES[0]", "garbage"),
        (
            {"P2P_LISTEN_ADDRESSES": '["/ip4/1.2.3.4/tcp/99999"]'},
            "P2P_LISTEN_ADDRESSES[0]",
            "/ip4/1.2.3.4/tcp/99999",
        ),
        (
            {"P2P_LISTEN_ADDRESSES": '["/unix/tmp/x.sock"]'},
            "P2P_LISTEN_ADDRESSES[0]",
            "/unix/tmp/x.sock",
        ),
        ({"P2P_LISTEN_ADDRESSES": '[""]'}, "P2P_LISTEN_ADDRESSES[0]", ""),
        (
            {"P2P_BOOTSTRAP_NODES": json.dumps([BOOT_1, "/ip4/1.2.3/tcp/4"])},
            "P2P_BOOTSTRAP_NODES[1]",
            "/ip4/1.2.3/tcp/4",
        ),
        # bootstrap without /p2p/
        (
            {"P2P_BOOTSTRAP_NODES": '["/ip4/1.2.3.4/tcp/4001"]'},
            "P2P_BOOTSTRAP_NODES[0]",
            "/ip4/1.2.3.4/tcp/4001",
        ),
        # bad peer id
        (
            {"P2P_BOOTSTRAP_NODES": '["/ip4/1.2.3.4/tcp/1/p2p/abc"]'},
            "P2P_BOOTSTRAP_NODES[0]",
            "/ip4/1.2.3.4/tcp/1/p2p/abc",
        ),
        # numbers
        ({"P2P_MAX_CONNECTIONS": "0"}, "P2P_MAX_CONNECTIONS", 0),
        ({"P2P_MAX_CONNECTIONS": "-5"}, "P2P_MAX_CONNECTIONS", -5),
        ({"P2P_MAX_CONNECTIONS": "ten"}, "P2P_MAX_CONNECTIONS", "ten"),
        ({"P2P_MAX_CONNECTIONS": "2.5"}, "P2P_MAX_CONNECTIONS", "2.5"),
        ({"P2P_CONNECTION_TIMEOUT": "-100"}, "P2P_CONNECTION_TIMEOUT", "-100"),
        ({"P2P_CONNECTION_TIMEOUT": "0"}, "P2P_CONNECTION_TIMEOUT", "0"),
        ({"P2P_CONNECTION_TIMEOUT": "soon"}, "P2P_CONNECTION_TIMEOUT", "soon"),
        ({"P2P_CONNECTION_TIMEOUT": "nan"}, "P2P_CONNECTION_TIMEOUT", "nan"),
        ({"P2P_CONNECTION_TIMEOUT": "inf"}, "P2P_CONNECTION_TIMEOUT", "inf"),
        # bools and enums
        ({"P2P_ENABLE_DHT": "maybe"}, "P2P_ENABLE_DHT", "maybe"),
        ({"P2P_ENABLE_MDNS": "2"}, "P2P_ENABLE_MDNS", "2"),
        ({"P2P_DHT_MODE": "serverr"}, "P2P_DHT_MODE", "serverr"),
        # control address
        (
            {"P2P_DAEMON_ADDR": "/ip4/127.0.0.1/udp/5001"},
            "P2P_DAEMON_ADDR",
            "/ip4/127.0.0.1/udp/5001",
        ),
        ({"P2P_DAEMON_ADDR": "localhost:5001"}, "P2P_DAEMON_ADDR", "localhost:5001"),
    ],
)
def test_invalid_env(env: dict[str, str], name: str, value: object) -> None:
    with pytest.raises(ConfigError) as exc:
        load(env)
    expect_config_error(exc, name, value)


def test_bad_multiaddr_message_matches_spec_example() -> None:
    env = {"P2P_BOOTSTRAP_NODES": json.dumps([BOOT_1, "/ip4/1.2.3/tcp/4"])}
    with pytest.raises(
        InvalidMultiaddrError, match=r"^invalid P2P_BOOTSTRAP_NODES\[1\]='/ip4/1\.2\.3/tcp/4': "
    ):
        load(env)


def test_bootstrap_without_p2p_says_so() -> None:
    with pytest.raises(InvalidMultiaddrError, match="/p2p/"):
        load({"P2P_BOOTSTRAP_NODES": '["/ip4/1.2.3.4/tcp/4001"]'})
    with pytest.raises(InvalidMultiaddrError, match="/p2p/"):
        NodeConfig(bootstrap=("/ip4/1.2.3.4/tcp/4001",))


def test_min_connections_above_env_max_names_both() -> None:
    with pytest.raises(ConfigError) as exc:
        load({"P2P_MAX_CONNECTIONS": "3"}, min_connections=4)
    expect_config_error(exc, "min_connections", 4)
    assert "P2P_MAX_CONNECTIONS" in str(exc.value)


# ------------------------------------------------- invalid from code / constructor


@pytest.mark.parametrize(
    ("kwargs", "name", "value"),
    [
        ({"listen": ("garbage",)}, "listen[0]", "garbage"),
        ({"listen": ("/ip4/127.0.0.1/tcp/0", "/tcp/4001")}, "listen[1]", "/tcp/4001"),
        ({"listen": "/ip4/127.0.0.1/tcp/0"}, "listen", "/ip4/127.0.0.1/tcp/0"),
        ({"listen": (" /ip4/127.0.0.1/tcp/0",)}, "listen[0]", " /ip4/127.0.0.1/tcp/0"),
        ({"announce": ("/ip4/1.2.3/tcp/1",)}, "announce[0]", "/ip4/1.2.3/tcp/1"),
        ({"bootstrap": ("/ip4/1.2.3.4/tcp/4001",)}, "bootstrap[0]", "/ip4/1.2.3.4/tcp/4001"),
        ({"bootstrap": (f"/p2p/{PEER_ED25519}",)}, "bootstrap[0]", f"/p2p/{PEER_ED25519}"),
        ({"bootstrap": (7,)}, "bootstrap[0]", 7),
        ({"max_connections": 0}, "max_connections", 0),
        ({"max_connections": -1}, "max_connections", -1),
        ({"max_connections": "10"}, "max_connections", "10"),
        ({"max_connections": True}, "max_connections", True),
        ({"min_connections": -1}, "min_connections", -1),
        ({"min_connections": 11}, "min_connections", 11),
        ({"connection_timeout": -1.0}, "connection_timeout", -1.0),
        ({"connection_timeout": 0}, "connection_timeout", 0),
        ({"connection_timeout": "30"}, "connection_timeout", "30"),
        ({"daemon_start_timeout": 0.0}, "daemon_start_timeout", 0.0),
        ({"daemon_stop_grace": -0.1}, "daemon_stop_grace", -0.1),
        ({"message_linger": -1}, "message_linger", -1),
        ({"max_message_size": 0}, "max_message_size", 0),
        ({"protocol_prefix": "fabstir-llm/1.0.0"}, "protocol_prefix", "fabstir-llm/1.0.0"),
        ({"protocol_prefix": "/fabstir-llm/"}, "protocol_prefix", "/fabstir-llm/"),
        ({"protocol_prefix": "/"}, "protocol_prefix", "/"),
        ({"enable_dht": "yes"}, "enable_dht", "yes"),
        ({"enable_mdns": 1}, "enable_mdns", 1),
        ({"restart_daemon": None}, "restart_daemon", None),
        ({"dht_mode": "Server"}, "dht_mode", "Server"),
        ({"control_addr": "/ip4/127.0.0.1/tcp/1/ws"}, "control_addr", "/ip4/127.0.0.1/tcp/1/ws"),
        ({"control_addr": ""}, "control_addr", ""),
        ({"p2pd_path": ""}, "p2pd_path", ""),
        ({"identity_file": 5}, "identity_file", 5),
    ],
)
def test_invalid_constructor_and_override(kwargs: dict[str, Any], name: str, value: object) -> None:
    with pytest.raises(ConfigError) as exc:
        NodeConfig(**kwargs)
    expect_config_error(exc, name, value)
    if value is not None:  # a None override means "not given" in load()
        with pytest.raises(ConfigError) as exc:
            load({}, **kwargs)
        expect_config_error(exc, name, value)


def test_replace_validates_too() -> None:
    with pytest.raises(ConfigError):
        dataclasses.replace(NodeConfig(), listen=("garbage",))


# ----------------------------------------------------------------- valid shapes


@pytest.mark.parametrize(
    "addr",
    [
        "/ip4/127.0.0.1/tcp/0/ws",
        "/ip4/0.0.0.0/tcp/4001/ws",
        "/ip4/0.0.0.0/udp/4001/quic-v1",
        "/ip4/0.0.0.0/udp/4001/quic-v1/webtransport",
        "/ip6/::/tcp/4001",
        "/ip6/::1/tcp/0/ws",
        "/dns4/node.example.com/tcp/443/wss",
        "/dns/node.example.com/tcp/4001",
    ],
)
def test_listen_shapes_accepted(addr: str) -> None:
    assert NodeConfig(listen=(addr,)).listen == (addr,)
    assert load({"P2P_LISTEN_ADDRESSES": json.dumps([addr])}).listen == (addr,)


def test_listen_is_canonicalised() -> None:
    assert NodeConfig(listen=("/ip4/127.0.0.1/tcp/0/ws/",)).listen == ("/ip4/127.0.0.1/tcp/0/ws",)


def test_bootstrap_shapes_accepted() -> None:
    relay = f"/ip4/1.2.3.4/tcp/1/p2p/{PEER_RSA}/p2p-circuit/p2p/{PEER_ED25519}"
    dnsaddr = f"/dnsaddr/bootstrap.example.org/p2p/{PEER_RSA}"
    cfg = NodeConfig(bootstrap=(BOOT_1, BOOT_2, relay, dnsaddr))
    assert cfg.bootstrap == (BOOT_1, BOOT_2, relay, dnsaddr)


def test_control_addr_ip6_and_custom_prefix() -> None:
    cfg = NodeConfig(control_addr="/ip6/::1/tcp/5001", protocol_prefix="/test/0.1")
    assert cfg.control_addr == "/ip6/::1/tcp/5001"
    assert cfg.message_protocol == "/test/0.1/message"


def test_identity_file_str_becomes_path() -> None:
    assert NodeConfig(identity_file="key.bin").identity_file == Path("key.bin")  # type: ignore[arg-type]


# ---------------------------------------------------------------------- helpers


def test_parse_multiaddr() -> None:
    addr = parse_multiaddr("/ip4/127.0.0.1/tcp/4001", name="opt")
    assert isinstance(addr, Multiaddr)
    assert str(addr) == "/ip4/127.0.0.1/tcp/4001"
    for bad in ("", "/", "garbage", "/ip4/1.2.3/tcp/4", "/ip4"):
        with pytest.raises(InvalidMultiaddrError) as exc:
            parse_multiaddr(bad, name="opt")
        expect_config_error(exc, "opt", bad)


def test_split_peer_multiaddr() -> None:
    assert split_peer_multiaddr(BOOT_1, name="x") == ("/ip4/10.0.0.1/tcp/4001", PEER_ED25519)
    assert split_peer_multiaddr(BOOT_2, name="x") == ("/ip6/::1/tcp/4002", PEER_RSA)
    relay = f"/ip4/1.2.3.4/tcp/1/p2p/{PEER_RSA}/p2p-circuit/p2p/{PEER_ED25519}"
    assert split_peer_multiaddr(relay, name="x") == (
        f"/ip4/1.2.3.4/tcp/1/p2p/{PEER_RSA}/p2p-circuit",
        PEER_ED25519,
    )


@pytest.mark.parametrize(
    "bad",
    [
        "/ip4/1.2.3.4/tcp/4001",
        f"/p2p/{PEER_ED25519}",
        f"/ip4/1.2.3.4/tcp/1/p2p/{PEER_RSA}/p2p-circuit",
        "/ip4/1.2.3.4/tcp/1/p2p/abc",
        "not-a-multiaddr",
    ],
)
def test_split_peer_multiaddr_rejects(bad: str) -> None:
    with pytest.raises(InvalidMultiaddrError) as exc:
        split_peer_multiaddr(bad, name="peer")
    expect_config_error(exc, "peer", bad)


def test_peer_id_parse() -> None:
    assert PeerId.parse(PEER_ED25519, name="id") == PEER_ED25519
    assert PeerId.parse(PEER_RSA, name="id") == PEER_RSA
    sha = b58encode(b"\x12\x20" + hashlib.sha256(b"k").digest())
    assert PeerId.parse(sha, name="id") == sha
    for bad in ("", "0OIl", PEER_RSA[:-1], b58encode(b"\x12\x05abcde"), b58encode(b"\x99\x01a")):
        with pytest.raises(ConfigError) as exc:
            PeerId.parse(bad, name="id")
        expect_config_error(exc, "id", bad)


# ------------------------------------------------------------------- properties

_octet = st.integers(min_value=0, max_value=255)
_port = st.integers(min_value=0, max_value=65535)
_loopback_tcp = st.one_of(
    st.builds(lambda b, c, d, p: f"/ip4/127.{b}.{c}.{d}/tcp/{p}", _octet, _octet, _octet, _port),
    st.builds(lambda p: f"/ip6/::1/tcp/{p}", _port),
).flatmap(lambda a: st.sampled_from([a, a + "/ws"]))
_peer_id = st.binary(min_size=32, max_size=32).map(lambda d: b58encode(b"\x12\x20" + d))


@settings(max_examples=60, deadline=None, database=None)
@given(st.lists(_loopback_tcp, max_size=6))
def test_listen_round_trips_through_env_json(addrs: list[str]) -> None:
    cfg = load({"P2P_LISTEN_ADDRESSES": json.dumps(addrs)})
    assert cfg.listen == tuple(addrs)


@settings(max_examples=40, deadline=None, database=None)
@given(st.lists(st.tuples(_loopback_tcp, _peer_id), max_size=4))
def test_bootstrap_round_trips_through_env_json(pairs: list[tuple[str, str]]) -> None:
    addrs = [f"{addr}/p2p/{peer}" for addr, peer in pairs]
    cfg = load({"P2P_BOOTSTRAP_NODES": json.dumps(addrs)})
    assert cfg.bootstrap == tuple(addrs)
    assert [split_peer_multiaddr(a, name="b") for a in cfg.bootstrap] == pairs


def test_data_dir_from_env_and_override(tmp_path: Path) -> None:
    cfg = NodeConfig.load(env={"P2P_DATA_DIR": str(tmp_path)})
    assert cfg.data_dir == tmp_path
    assert NodeConfig.load(env={}, data_dir=tmp_path / "x").data_dir == tmp_path / "x"
    assert NodeConfig.load(env={}).data_dir is None
