"""NAT options: NodeConfig fields and env vars, role presets, and the p2pd flags they become."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from fabstir_sidecar.core.errors import ConfigError
from fabstir_sidecar.core.settings import ENV_VARS, NodeConfig
from fabstir_sidecar.daemon.process import DaemonSpec, build_argv
from fabstir_sidecar.daemon.runtime_dir import RuntimeDir
from fabstir_sidecar.node.launch import launch_daemon, metrics_addr
from fabstir_sidecar.tools.roles import role_config

R1 = "/ip4/10.0.0.1/tcp/4001/p2p/12D3KooWHsHHcDmBi73RNPUqSZikF87QD8ZhAoHeuSq8YmRzXn5g"
R2 = "/ip4/10.0.0.2/udp/4001/quic-v1/p2p/QmYyQSo1c1Ym7orWxLYvCrM2EmxFTANf8wXmmE7DWjhx5N"
NAT_VARS = {
    "P2P_RELAY_SERVICE",
    "P2P_ENABLE_RELAY_CLIENT",
    "P2P_RELAYS",
    "P2P_ENABLE_AUTONAT",
    "P2P_ENABLE_HOLE_PUNCHING",
    "P2P_ENABLE_NAT_PORTMAP",
    "P2P_FORCE_REACHABILITY",
    "P2P_METRICS_ADDR",
}


def load(env: dict[str, str] | None = None, **overrides: Any) -> NodeConfig:
    return NodeConfig.load(env=env or {}, **overrides)


def argv_of(**changes: Any) -> list[str]:
    values: dict[str, Any] = {
        "binary": Path("/opt/p2pd"),
        "control_socket": Path("/run/x/p2pd.sock"),
        "listen": ("/ip4/127.0.0.1/tcp/0",),
    }
    values.update(changes)
    return build_argv(DaemonSpec(**values))


def test_env_vars_documented() -> None:
    assert set(ENV_VARS) >= NAT_VARS


def test_defaults_leave_nat_off_and_relay_service_on() -> None:
    cfg = NodeConfig()
    # on, because p2pd 1.1.12 relays for others whatever it is told (tests/netns)
    assert (cfg.relay_service, cfg.relay_client, cfg.relays) == (True, False, ())
    assert not (cfg.enable_autonat or cfg.enable_hole_punching or cfg.enable_nat_portmap)
    assert (cfg.force_reachability, cfg.metrics_addr) == ("auto", None)


def test_env_parsed() -> None:
    cfg = load(
        {
            "P2P_RELAY_SERVICE": "no",
            "P2P_ENABLE_RELAY_CLIENT": "1",
            "P2P_RELAYS": f'["{R1}", "{R2}"]',
            "P2P_ENABLE_AUTONAT": "on",
            "P2P_ENABLE_HOLE_PUNCHING": "true",
            "P2P_ENABLE_NAT_PORTMAP": "true",
            "P2P_FORCE_REACHABILITY": " Private ",
            "P2P_METRICS_ADDR": "127.0.0.1:9100",
        }
    )
    assert not cfg.relay_service and cfg.relay_client and cfg.enable_nat_portmap
    assert cfg.enable_autonat and cfg.enable_hole_punching
    assert cfg.relays == (R1, R2)
    assert cfg.force_reachability == "private"
    assert cfg.metrics_addr == "127.0.0.1:9100"


@pytest.mark.parametrize(
    ("env", "needle"),
    [
        ({"P2P_FORCE_REACHABILITY": "maybe"}, "P2P_FORCE_REACHABILITY"),
        ({"P2P_RELAYS": '["/ip4/10.0.0.1/tcp/1"]'}, "P2P_RELAYS[0]"),
        ({"P2P_RELAYS": "not json"}, "P2P_RELAYS"),
        ({"P2P_ENABLE_NAT_PORTMAP": "perhaps"}, "P2P_ENABLE_NAT_PORTMAP"),
        ({"P2P_METRICS_ADDR": "localhost:9100"}, "P2P_METRICS_ADDR"),
        ({"P2P_METRICS_ADDR": "127.0.0.1:0"}, "P2P_METRICS_ADDR"),
        ({"P2P_ENABLE_RELAY_CLIENT": "true", "P2P_ENABLE_DHT": "false"}, "P2P_ENABLE_DHT"),
    ],
)
def test_bad_env_names_the_variable(env: dict[str, str], needle: str) -> None:
    with pytest.raises(ConfigError) as info:
        load(env)
    assert needle in str(info.value)


def test_direct_construction_checked() -> None:
    with pytest.raises(ConfigError, match="force_reachability"):
        NodeConfig(force_reachability="sometimes")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="relay_client"):
        NodeConfig(relay_client=True, enable_dht=False)
    with pytest.raises(ConfigError, match="metrics_addr"):
        NodeConfig(metrics_addr="[::1]:99999")
    assert NodeConfig(metrics_addr="[::1]:9100").metrics_addr == "[::1]:9100"


def test_every_preset_relays_by_default_env_can_ask_otherwise() -> None:
    for role in ("bootstrap", "host", "client", "direct"):
        assert role_config(role, env={}).relay_service is True  # type: ignore[arg-type]
    assert role_config("bootstrap", env={"P2P_RELAY_SERVICE": "false"}).relay_service is False


# ------------------------------------------------------------------------------ argv


def test_default_argv_turns_relay_service_off_only_when_asked() -> None:
    argv = argv_of()
    for flag in ("-autoRelay", "-autonat", "-natPortMap", "-metricsAddr", "-trustedRelays"):
        assert flag not in argv
    assert not any(a.startswith(("-relayService", "-forceReachability")) for a in argv)
    assert "-relayService=false" in argv_of(relay_service=False)


def test_relay_client_defaults_to_bootstrap_peers_as_relays() -> None:
    argv = argv_of(relay_client=True, bootstrap=(R1,))
    assert "-autoRelay" in argv
    assert argv[argv.index("-trustedRelays") + 1] == R1
    assert "-relayDiscovery=false" in argv  # static relays: reserve at once
    argv = argv_of(relay_client=True, bootstrap=(R1,), relays=(R2,))
    assert argv[argv.index("-trustedRelays") + 1] == R2
    argv = argv_of(relay_client=True)
    assert "-trustedRelays" not in argv and "-relayDiscovery=false" not in argv


@pytest.mark.parametrize(
    ("changes", "flags"),
    [
        ({"autonat_service": True}, ["-autonat"]),
        ({"nat_portmap": True}, ["-natPortMap"]),
        ({"force_reachability": "private"}, ["-forceReachabilityPrivate"]),
        ({"force_reachability": "public"}, ["-forceReachabilityPublic"]),
        ({"metrics_addr": "127.0.0.1:9100"}, ["-metricsAddr", "127.0.0.1:9100"]),
    ],
)
def test_nat_flags(changes: dict[str, Any], flags: list[str]) -> None:
    argv = argv_of(**changes)
    start = argv.index(flags[0])
    assert argv[start : start + len(flags)] == flags


def test_launch_maps_config_to_spec(caplog: pytest.LogCaptureFixture) -> None:
    cfg = role_config(
        "host",
        env={},
        bootstrap=(R1,),
        relay_client=True,
        enable_hole_punching=True,
        enable_nat_portmap=True,
        force_reachability="private",
        relay_service=False,
    )
    runtime = RuntimeDir()
    try:

        async def restarted() -> None:
            return None

        daemon, _ = launch_daemon(cfg, runtime, restarted)
        spec = daemon.spec  # type: ignore[attr-defined]
        assert spec.relay_client and spec.autonat_service and spec.nat_portmap
        assert not spec.relay_service
        assert "relays circuits for other peers whatever" in caplog.text
        assert spec.force_reachability == "private"
        assert spec.metrics_addr is not None and spec.metrics_addr.startswith("127.0.0.1:")
        argv = build_argv(spec)
        assert {"-autoRelay", "-autonat", "-natPortMap", "-relayService=false"} <= set(argv)
        assert "-dht" in argv  # -autoRelay needs a DHT mode flag
        # bootstrapping is done from Python (-bootstrapPeers ""), so the relays are explicit
        assert argv[argv.index("-trustedRelays") + 1] == R1
    finally:
        runtime.close()


def test_metrics_addr_only_when_a_nat_feature_is_on() -> None:
    assert metrics_addr(NodeConfig()) is None
    assert metrics_addr(NodeConfig(metrics_addr="127.0.0.1:9100")) == "127.0.0.1:9100"
    assert metrics_addr(NodeConfig(enable_autonat=True)) is not None


def test_cli_flags_become_config_and_beat_env(monkeypatch: pytest.MonkeyPatch) -> None:
    from fabstir_sidecar.cli.common import node_config

    monkeypatch.setenv("P2P_FORCE_REACHABILITY", "public")
    monkeypatch.setenv("P2P_ENABLE_NAT_PORTMAP", "true")
    cfg = node_config(
        "host", bootstrap=[R1], relay_client=True, relay=[R2], force_reachability="private"
    )
    assert cfg.relay_client and cfg.relays == (R2,)
    assert cfg.force_reachability == "private"  # flag beats env
    assert cfg.enable_nat_portmap  # env applies where no flag is given
    assert node_config("bootstrap", relay_service=False).relay_service is False
