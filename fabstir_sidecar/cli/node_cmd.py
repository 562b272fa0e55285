"""``node``, ``send``, ``peers`` and ``identity``: a plain Fabstir node from the shell."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import anyio
import typer

from fabstir_sidecar.cli import common as opt
from fabstir_sidecar.cli.output import emit_event, fail, failures_reported, say
from fabstir_sidecar.cli.serving import serve_role
from fabstir_sidecar.core.errors import ConfigError
from fabstir_sidecar.core.multiaddr import parse_multiaddr
from fabstir_sidecar.core.settings import NodeConfig
from fabstir_sidecar.daemon.control import DaemonControl
from fabstir_sidecar.daemon.identity import load_or_create_identity, peer_id_from_key_file
from fabstir_sidecar.node.manager import DiscoveryManager


def node(
    listen: opt.ListenOpt = None,
    bootstrap: opt.BootstrapOpt = None,
    identity: opt.IdentityOpt = None,
    json_out: opt.JsonOpt = False,
    p2pd: opt.P2pdOpt = None,
    attach: opt.AttachOpt = None,
    dht: opt.DhtOpt = None,
    dht_mode: opt.DhtModeOpt = None,
    max_connections: opt.MaxConnOpt = None,
    connection_timeout: opt.TimeoutMsOpt = None,
    daemon: opt.DaemonKindOpt = None,
    daemon_image: opt.DaemonImageOpt = None,
) -> None:
    """Run a node until SIGINT/SIGTERM, printing received SDK messages.

    With --json: a {"event":"ready",...} line, then one {"event":"message",...} per message.
    """
    serve_role("client", locals(), lambda peer_id: f"peer id: {peer_id}", notes=_notes)


def _notes(node: DiscoveryManager) -> list[str]:
    failed = [r for r in node.bootstrap_results if not r.ok]
    return [f"bootstrap unreachable: {r.address} ({r.error})" for r in failed] + [
        "press Ctrl-C to stop"
    ]


def send(
    peer_multiaddr: Annotated[str, typer.Argument(help="Target, ending in /p2p/<peer id>.")],
    json_message: Annotated[str, typer.Argument(help="The JSON message to send.")],
    p2pd: opt.P2pdOpt = None,
    connection_timeout: opt.TimeoutMsOpt = None,
) -> None:
    """Dial a peer, send one SDK message (<prefix>/message), exit 0. Failure: exit 1 + reason."""
    try:
        message = json.loads(json_message)
    except ValueError as exc:
        fail(f"JSON_MESSAGE is not valid JSON: {exc}", 2)
    with failures_reported():
        parse_multiaddr(peer_multiaddr, name="PEER_MULTIADDR")
        cfg = opt.command_config("direct", locals())
        anyio.run(_send, cfg, peer_multiaddr, message)


async def _send(cfg: NodeConfig, target: str, message: Any) -> None:
    async with DiscoveryManager(cfg) as mgr:
        await mgr.send_message(target, message)


def peers(
    api: Annotated[str, typer.Option("--api", help="Control multiaddr of a running p2pd.")],
    json_out: opt.JsonOpt = False,
) -> None:
    """List the peers a running daemon is connected to."""
    with failures_reported():
        control = DaemonControl(api)
        found = anyio.run(control.list_peers)
    for peer in found:
        if json_out:
            emit_event("peer", peer_id=peer.peer_id, addrs=list(peer.addrs))
        else:
            say(f"{peer.peer_id} {' '.join(peer.addrs)}")


def identity(
    path: Annotated[Path, typer.Argument(help="Key file; created (0600) if missing.")],
    show_only: Annotated[
        bool, typer.Option("--show", help="Do not create; fail if missing.")
    ] = False,
) -> None:
    """Create (or read) a persistent identity key file and print its peer ID."""
    try:
        peer_id = peer_id_from_key_file(path) if show_only else load_or_create_identity(path)
    except ConfigError as exc:
        fail(str(exc), 2)
    sys.stdout.write(f"{peer_id}\n")


COMMANDS = (node, send, peers, identity)
"""The commands of this module, in the order ``fabstir-sidecar --help`` lists them."""
