"""build_argv: the exact p2pd flags we pass (no daemon started)."""

from __future__ import annotations

from pathlib import Path

import pytest

from fabstir_sidecar.daemon.process import DaemonSpec, build_argv

BIN = Path("/opt/p2pd")
SOCK = Path("/run/user/1000/fabstir-sidecar-1-abc/p2pd.sock")
DHT_FLAGS = {"-dht", "-dhtServer", "-dhtClient"}


def spec(**changes: object) -> DaemonSpec:
    values: dict[str, object] = {
        "binary": BIN,
        "control_socket": SOCK,
        "listen": ("/ip4/127.0.0.1/tcp/0",),
    }
    values.update(changes)
    return DaemonSpec(**values)  # type: ignore[arg-type]


def flag_value(argv: list[str], flag: str) -> str:
    assert argv.count(flag) == 1, argv
    return argv[argv.index(flag) + 1]


def test_binary_and_control_socket() -> None:
    argv = build_argv(spec())
    assert argv[0] == str(BIN)
    assert flag_value(argv, "-listen") == f"/unix{SOCK}"


def test_bootstrap_peers_always_passed_and_empty_when_none() -> None:
    argv = build_argv(spec())
    assert flag_value(argv, "-bootstrapPeers") == ""
    assert "-b" not in argv


def test_bootstrap_peers_joined_and_never_b() -> None:
    peers = (
        "/ip4/10.0.0.1/tcp/4001/p2p/12D3KooWHsHHcDmBi73RNPUqSZikF87QD8ZhAoHeuSq8YmRzXn5g",
        "/ip4/10.0.0.2/tcp/4001/p2p/QmYyQSo1c1Ym7orWxLYvCrM2EmxFTANf8wXmmE7DWjhx5N",
    )
    argv = build_argv(spec(bootstrap=peers))
    assert flag_value(argv, "-bootstrapPeers") == ",".join(peers)
    assert "-b" not in argv


@pytest.mark.parametrize(
    ("mode", "flag"), [("auto", "-dht"), ("server", "-dhtServer"), ("client", "-dhtClient")]
)
def test_dht_modes(mode: str, flag: str) -> None:
    argv = build_argv(spec(enable_dht=True, dht_mode=mode))
    assert flag in argv
    assert DHT_FLAGS & set(argv) == {flag}


@pytest.mark.parametrize("mode", ["auto", "server", "client"])
def test_no_dht_flag_when_disabled(mode: str) -> None:
    argv = build_argv(spec(enable_dht=False, dht_mode=mode))
    assert not DHT_FLAGS & set(argv)


def test_listen_addresses_joined() -> None:
    listen = ("/ip4/127.0.0.1/tcp/0", "/ip4/127.0.0.1/tcp/0/ws")
    argv = build_argv(spec(listen=listen))
    assert flag_value(argv, "-hostAddrs") == ",".join(listen)
    assert "-noListenAddrs" not in argv


def test_no_listen_addresses() -> None:
    argv = build_argv(spec(listen=()))
    assert "-noListenAddrs" in argv
    assert "-hostAddrs" not in argv


def test_identity_flag() -> None:
    assert "-id" not in build_argv(spec())
    argv = build_argv(spec(identity_file=Path("/keys/node.key")))
    assert flag_value(argv, "-id") == "/keys/node.key"


def test_announce_flag() -> None:
    assert "-announceAddrs" not in build_argv(spec())
    announce = ("/ip4/203.0.113.7/tcp/4001", "/dns4/node.example/tcp/4001")
    argv = build_argv(spec(announce=announce))
    assert flag_value(argv, "-announceAddrs") == ",".join(announce)


def test_conn_manager_flags() -> None:
    argv = build_argv(spec(conn_low=3, conn_high=42))
    assert "-connManager" in argv
    assert flag_value(argv, "-connLo") == "3"
    assert flag_value(argv, "-connHi") == "42"


def test_conn_manager_defaults() -> None:
    argv = build_argv(spec())
    assert "-connManager" in argv
    assert flag_value(argv, "-connLo") == "0"
    assert flag_value(argv, "-connHi") == "10"


def test_extra_args_appended_last() -> None:
    argv = build_argv(spec(extra_args=("-natPortMap=false", "-quiet")))
    assert argv[-2:] == ["-natPortMap=false", "-quiet"]


def test_with_listen_replaces_only_listen() -> None:
    original = spec(identity_file=Path("/k"), enable_dht=False)
    changed = original.with_listen(("/ip4/127.0.0.1/tcp/4001",))
    assert changed.listen == ("/ip4/127.0.0.1/tcp/4001",)
    assert changed.identity_file == Path("/k")
    assert changed.enable_dht is False
    assert original.listen == ("/ip4/127.0.0.1/tcp/0",)
