"""Options shared by the commands that start a node, and turning them into a NodeConfig."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any

import typer

from ..config import NodeConfig

# A bootstrap node is a DHT server every node dials: p2pd's connection manager must not trim
# it down to a client's 10 connections (P2P_MAX_CONNECTIONS or --max-connections still win).
BOOTSTRAP_MAX_CONNECTIONS = 400

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
    *,
    listen: list[str] | None,
    bootstrap: list[str] | None,
    identity: Path | None,
    p2pd: str | None,
    attach: str | None = None,
    dht: bool | None = None,
    dht_mode: str | None = None,
    max_connections: int | None = None,
    connection_timeout_ms: int | None = None,
    **extra: Any,
) -> NodeConfig:
    """Flags over environment over defaults (``None`` = flag not given)."""
    return NodeConfig.load(
        listen=tuple(listen) if listen else None,
        bootstrap=tuple(bootstrap) if bootstrap else None,
        identity_file=identity,
        p2pd_path=p2pd,
        control_addr=attach,
        enable_dht=dht,
        dht_mode=dht_mode,
        max_connections=max_connections,
        connection_timeout=None if connection_timeout_ms is None else connection_timeout_ms / 1000,
        **extra,
    )


def unless_env(value: int | None, var: str, default: int) -> int | None:
    """A command's own default for an option: ``value`` if given, else ``None`` (the
    environment's value) when ``var`` is set, else ``default``."""
    if value is not None:
        return value
    raw = os.environ.get(var)
    return None if raw is not None and raw.strip() else default
