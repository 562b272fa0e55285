"""Options shared by the commands that start a node, and handing them to a role preset."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Final

import typer

from fabstir_sidecar.core.settings import NodeConfig
from fabstir_sidecar.core.validate import seconds_from_millis
from fabstir_sidecar.tools.roles import BOOTSTRAP_MAX_CONNECTIONS, Role, role_config

ListenOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--listen", "-l", help="Listen multiaddr (repeatable). Default /ip4/127.0.0.1/tcp/0."
    ),
]
BootstrapOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--bootstrap", "-b", help="Bootstrap peer multiaddr ending in /p2p/<id> (repeatable)."
    ),
]
IdentityOpt = Annotated[
    Path | None,
    typer.Option(
        "--identity", help="Private key file (created if missing): same peer ID across restarts."
    ),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON lines on stdout.")]
JsonDocOpt = Annotated[
    bool, typer.Option("--json", help="Print the result as one JSON document on one line.")
]
AnnounceOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--announce",
        help="Announced multiaddr (repeatable): what p2pd advertises instead of --listen.",
    ),
]
P2pdOpt = Annotated[str | None, typer.Option("--p2pd", help="Path of the p2pd binary to use.")]
AttachOpt = Annotated[
    str | None,
    typer.Option("--attach", help="Use an already running p2pd at this control multiaddr."),
]
DaemonKindOpt = Annotated[
    str | None,
    typer.Option(
        "--daemon",
        help="process (default) or docker: p2pd in a container (P2P_DAEMON; the docker extra).",
    ),
]
DaemonImageOpt = Annotated[
    str | None,
    typer.Option("--daemon-image", help="Image of --daemon docker (P2P_DAEMON_IMAGE)."),
]
DhtOpt = Annotated[bool | None, typer.Option("--dht/--no-dht", help="Enable the DHT.")]
DhtModeOpt = Annotated[str | None, typer.Option("--dht-mode", help="auto, server or client.")]
MaxConnOpt = Annotated[
    int | None,
    typer.Option(
        "--max-connections",
        help="Connection manager high-water mark (P2P_MAX_CONNECTIONS; default 10).",
    ),
]
BootstrapMaxConnOpt = Annotated[
    int | None,
    typer.Option(
        "--max-connections",
        help=(
            "Connection manager high-water mark "
            f"(P2P_MAX_CONNECTIONS; default {BOOTSTRAP_MAX_CONNECTIONS})."
        ),
    ),
]
TimeoutMsOpt = Annotated[
    int | None,
    typer.Option("--connection-timeout", help="Connection/read timeout in milliseconds."),
]


FLAG_OPTIONS: Final[dict[str, str]] = {
    "listen": "listen",
    "bootstrap": "bootstrap",
    "announce": "announce",
    "identity": "identity_file",
    "p2pd": "p2pd_path",
    "attach": "control_addr",
    "dht": "enable_dht",
    "dht_mode": "dht_mode",
    "max_connections": "max_connections",
    "connection_timeout": "connection_timeout",
    "daemon": "daemon",
    "daemon_image": "daemon_image",
    "data_dir": "data_dir",
    "relay_service": "relay_service",
    "relay_client": "relay_client",
    "relay": "relays",
    "autonat": "enable_autonat",
    "hole_punching": "enable_hole_punching",
    "nat_portmap": "enable_nat_portmap",
    "force_reachability": "force_reachability",
    "metrics_addr": "metrics_addr",
}
"""A command's node flag (its parameter name) -> the ``NodeConfig`` option it sets."""


def node_config(role: Role, **flags: Any) -> NodeConfig:
    """The ``role`` preset's config with these flags, named as the commands' parameters
    (:data:`FLAG_OPTIONS`); ``None`` or an empty list = flag not given: the environment,
    then the preset, decide. ``--connection-timeout`` is in milliseconds."""
    options: dict[str, Any] = {}
    for flag, value in flags.items():
        if isinstance(value, list):
            value = tuple(value) or None
        if flag == "connection_timeout":
            value = seconds_from_millis(value, "--connection-timeout")
        options[FLAG_OPTIONS[flag]] = value
    return role_config(role, **options)


def command_config(role: Role, params: Mapping[str, Any]) -> NodeConfig:
    """:func:`node_config` from a command's parameters (its ``locals()``): the node flags
    among them (:data:`FLAG_OPTIONS`); its other parameters and locals are its own."""
    return node_config(role, **{k: v for k, v in params.items() if k in FLAG_OPTIONS})


# ------------------------------------------------------------- NAT traversal (docs/nat.md)
RelayServiceOpt = Annotated[
    bool | None,
    typer.Option(
        "--relay-service/--no-relay-service",
        help="Relay circuits for peers behind NAT (P2P_RELAY_SERVICE; p2pd relays regardless).",
    ),
]
RelayClientOpt = Annotated[
    bool | None,
    typer.Option(
        "--relay-client/--no-relay-client",
        help="Reserve a relay slot and advertise /p2p-circuit addresses (P2P_ENABLE_RELAY_CLIENT).",
    ),
]
RelayOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--relay",
        help="Relay multiaddr ending in /p2p/<id> (repeatable; P2P_RELAYS; default: bootstrap).",
    ),
]
AutonatOpt = Annotated[
    bool | None,
    typer.Option(
        "--autonat/--no-autonat",
        help="Answer other peers' AutoNAT probes (P2P_ENABLE_AUTONAT).",
    ),
]
HolePunchOpt = Annotated[
    bool | None,
    typer.Option(
        "--hole-punching/--no-hole-punching",
        help="Upgrade relayed connections to direct ones, DCUtR (P2P_ENABLE_HOLE_PUNCHING).",
    ),
]
NatPortmapOpt = Annotated[
    bool | None,
    typer.Option(
        "--nat-portmap/--no-nat-portmap",
        help="Ask the router for a port mapping, UPnP / NAT-PMP (P2P_ENABLE_NAT_PORTMAP).",
    ),
]
ReachabilityOpt = Annotated[
    str | None,
    typer.Option(
        "--force-reachability",
        help="auto (AutoNAT decides), public or private (P2P_FORCE_REACHABILITY).",
    ),
]
MetricsAddrOpt = Annotated[
    str | None,
    typer.Option("--metrics-addr", help="host:port of p2pd's Prometheus endpoint."),
]
