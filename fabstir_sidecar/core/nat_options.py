"""The NAT-traversal options of a node (relay, AutoNAT, hole punching, port mapping,
forced reachability, metrics endpoint): their environment variables and their checks.

Kept apart from :mod:`fabstir_sidecar.core.settings` (which calls :func:`check_nat_options`
from its own validation) so that the NAT knobs and what they mean to p2pd read in one place.
See docs/nat.md for what each does and when it helps.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Mapping
from typing import Any, Final, Literal, get_args

from fabstir_sidecar.core.errors import ConfigError
from fabstir_sidecar.core.multiaddr import check_bootstrap_addr
from fabstir_sidecar.core.validate import (
    EnvVar,
    check_bool,
    check_choice,
    check_list,
    env_bool,
    env_choice,
    env_json_list,
    env_str,
)

__all__ = [
    "FORCED_REACHABILITY",
    "NAT_ENV",
    "NAT_ENV_VARS",
    "ForcedReachability",
    "check_metrics_addr",
    "check_nat_options",
]

ForcedReachability = Literal["auto", "public", "private"]
FORCED_REACHABILITY: Final[tuple[str, ...]] = get_args(ForcedReachability)

NAT_ENV: Final[dict[str, EnvVar]] = {
    "P2P_RELAY_SERVICE": EnvVar(
        "relay_service",
        env_bool,
        "relay circuits for other peers (true/false; default true; p2pd 1.1.12 relays even "
        "when false)",
    ),
    "P2P_ENABLE_RELAY_CLIENT": EnvVar(
        "relay_client",
        env_bool,
        "reserve a slot on relays and advertise /p2p-circuit addresses when unreachable "
        "(true/false; needs the DHT)",
    ),
    "P2P_RELAYS": EnvVar(
        "relays",
        env_json_list,
        "JSON list of relay multiaddrs ending in /p2p/<peer id>; default: the bootstrap nodes",
    ),
    "P2P_ENABLE_AUTONAT": EnvVar(
        "enable_autonat", env_bool, "answer other peers' AutoNAT dial-back probes (true/false)"
    ),
    "P2P_ENABLE_HOLE_PUNCHING": EnvVar(
        "enable_hole_punching",
        env_bool,
        "upgrade relayed connections to direct ones with DCUtR (true/false)",
    ),
    "P2P_ENABLE_NAT_PORTMAP": EnvVar(
        "enable_nat_portmap",
        env_bool,
        "ask the router for a port mapping with UPnP-IGD / NAT-PMP (true/false)",
    ),
    "P2P_FORCE_REACHABILITY": EnvVar(
        "force_reachability",
        env_choice(FORCED_REACHABILITY),
        "auto (AutoNAT decides), public or private",
    ),
    "P2P_METRICS_ADDR": EnvVar(
        "metrics_addr",
        env_str,
        "host:port where p2pd serves Prometheus metrics (reachability is read from there); "
        "unset: a free loopback port when the relay client, AutoNAT or port mapping is on",
    ),
}
NAT_ENV_VARS: Final[dict[str, str]] = {var: env.help for var, env in NAT_ENV.items()}


def check_metrics_addr(value: object, name: str) -> str | None:
    """``host:port`` with an IP host (``127.0.0.1:9100``, ``[::1]:9100``); port 0 is not
    allowed because nobody could find the endpoint afterwards."""
    if value is None:
        return None
    if not isinstance(value, str) or ":" not in value:
        raise ConfigError(name, value, "expected host:port, e.g. 127.0.0.1:9100")
    host, _, port = value.rpartition(":")
    try:
        ipaddress.ip_address(host.removeprefix("[").removesuffix("]"))
    except ValueError:
        raise ConfigError(name, value, "the host must be an IP address") from None
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(name, value, "the port must be 1..65535")
    return value


def check_nat_options(values: Mapping[str, Any], n: Callable[[str], str]) -> dict[str, Any]:
    """The NAT fields of ``values`` checked and normalised (``n`` names a field in errors)."""
    out: dict[str, Any] = {}
    for key in (
        "relay_service",
        "relay_client",
        "enable_autonat",
        "enable_hole_punching",
        "enable_nat_portmap",
    ):
        out[key] = check_bool(values[key], n(key))
    out["relays"] = check_list(values["relays"], name=n("relays"), check=check_bootstrap_addr)
    check_choice(values["force_reachability"], FORCED_REACHABILITY, n("force_reachability"))
    if out["relay_client"] and not values["enable_dht"]:
        # p2pd refuses to start: "can't have autorelay enabled without ... DHT enabled".
        raise ConfigError(n("relay_client"), True, f"needs the DHT ({n('enable_dht')} is false)")
    out["metrics_addr"] = check_metrics_addr(values["metrics_addr"], n("metrics_addr"))
    return out
