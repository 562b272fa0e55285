"""Options shared by the commands that start a node, and handing them to a role preset."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

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


def node_config(
    role: Role,
    *,
    listen: list[str] | None = None,
    bootstrap: list[str] | None = None,
    identity: Path | None = None,
    p2pd: str | None = None,
    attach: str | None = None,
    dht: bool | None = None,
    dht_mode: str | None = None,
    max_connections: int | None = None,
    connection_timeout_ms: int | None = None,
    announce: list[str] | None = None,
    **extra: Any,
) -> NodeConfig:
    """The ``role`` preset's config with these flags (``None`` or an empty list = flag not
    given: the environment, then the preset, decide)."""
    return role_config(
        role,
        listen=tuple(listen) if listen else None,
        bootstrap=tuple(bootstrap) if bootstrap else None,
        announce=tuple(announce) if announce else None,
        identity_file=identity,
        p2pd_path=p2pd,
        control_addr=attach,
        enable_dht=dht,
        dht_mode=dht_mode,
        max_connections=max_connections,
        connection_timeout=seconds_from_millis(connection_timeout_ms, "--connection-timeout"),
        **extra,
    )


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


def nat_options(
    *,
    relay_service: bool | None = None,
    relay_client: bool | None = None,
    relay: list[str] | None = None,
    autonat: bool | None = None,
    hole_punching: bool | None = None,
    nat_portmap: bool | None = None,
    force_reachability: str | None = None,
    metrics_addr: str | None = None,
) -> dict[str, Any]:
    """The NAT flags as ``NodeConfig`` options for :func:`node_config` (None = not given)."""
    return {
        "relay_service": relay_service,
        "relay_client": relay_client,
        "relays": tuple(relay) if relay else None,
        "enable_autonat": autonat,
        "enable_hole_punching": hole_punching,
        "enable_nat_portmap": nat_portmap,
        "force_reachability": force_reachability,
        "metrics_addr": metrics_addr,
    }
