"""``node``, ``send``, ``peers`` and ``identity``: a plain Fabstir node from the shell."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import anyio
import typer

from ..config import NodeConfig, parse_multiaddr
from ..errors import ConfigError, FabstirError
from ..node import DiscoveryManager
from ..p2pd.control import DaemonControl
from ..p2pd.identity import load_or_create_identity, peer_id_from_key_file
from .common import (
    AttachOpt,
    BootstrapOpt,
    DaemonImageOpt,
    DaemonKindOpt,
    DhtModeOpt,
    DhtOpt,
    IdentityOpt,
    JsonOpt,
    ListenOpt,
    MaxConnOpt,
    P2pdOpt,
    TimeoutMsOpt,
    node_config,
)
from .output import emit_event, exit_code_for, fail, run_until_shutdown_signal, say


def node(
    listen: ListenOpt = None,
    bootstrap: BootstrapOpt = None,
    identity: IdentityOpt = None,
    json_out: JsonOpt = False,
    p2pd: P2pdOpt = None,
    attach: AttachOpt = None,
    daemon: DaemonKindOpt = None,
    daemon_image: DaemonImageOpt = None,
    dht: DhtOpt = None,
    dht_mode: DhtModeOpt = None,
    max_connections: MaxConnOpt = None,
    connection_timeout: TimeoutMsOpt = None,
) -> None:
    """Run a node until SIGINT/SIGTERM, printing received SDK messages.

    With --json: a {"event":"ready",...} line, then one {"event":"message",...} per message.
    """
    try:
        cfg = node_config(
            listen=listen,
            bootstrap=bootstrap,
            identity=identity,
            p2pd=p2pd,
            attach=attach,
            daemon=daemon,
            daemon_image=daemon_image,
            dht=dht,
            dht_mode=dht_mode,
            max_connections=max_connections,
            connection_timeout_ms=connection_timeout,
        )
        anyio.run(_run_node, cfg, json_out)
    except FabstirError as exc:
        fail(str(exc), exit_code_for(exc))


async def _run_node(cfg: NodeConfig, json_out: bool) -> None:
    await run_until_shutdown_signal(lambda: _serve_node(cfg, json_out))


async def _serve_node(cfg: NodeConfig, json_out: bool) -> None:
    async with DiscoveryManager(cfg) as mgr:
        addrs = await mgr.get_addrs()

        def on_message(sender: str, message: Any) -> None:
            if json_out:
                emit_event("message", **{"from": sender, "message": message})
            else:
                say(f"message from {sender}: {json.dumps(message, ensure_ascii=False)}")

        mgr.on_message(on_message)
        if json_out:
            emit_event("ready", peer_id=mgr.peer_id, addrs=addrs)
        else:
            say(f"peer id: {mgr.peer_id}")
            for addr in addrs:
                say(f"listening: {addr}")
            failed = [r for r in mgr.bootstrap_results if not r.ok]
            for result in failed:
                say(f"bootstrap unreachable: {result.address} ({result.error})")
            say("press Ctrl-C to stop")
        await anyio.sleep_forever()


def send(
    peer_multiaddr: Annotated[str, typer.Argument(help="Target, ending in /p2p/<peer id>.")],
    json_message: Annotated[str, typer.Argument(help="The JSON message to send.")],
    p2pd: P2pdOpt = None,
    connection_timeout: TimeoutMsOpt = None,
) -> None:
    """Dial a peer, send one SDK message (<prefix>/message), exit 0. Failure: exit 1 + reason."""
    try:
        message = json.loads(json_message)
    except ValueError as exc:
        fail(f"JSON_MESSAGE is not valid JSON: {exc}", 2)
    try:
        parse_multiaddr(peer_multiaddr, name="PEER_MULTIADDR")
        cfg = node_config(
            listen=None,
            bootstrap=[],
            identity=None,
            p2pd=p2pd,
            dht=False,
            connection_timeout_ms=connection_timeout,
        )
        anyio.run(_send, cfg, peer_multiaddr, message)
    except FabstirError as exc:
        fail(str(exc), exit_code_for(exc))


async def _send(cfg: NodeConfig, target: str, message: Any) -> None:
    async with DiscoveryManager(cfg) as mgr:
        await mgr.send_message(target, message)


def peers(
    api: Annotated[str, typer.Option("--api", help="Control multiaddr of a running p2pd.")],
    json_out: JsonOpt = False,
) -> None:
    """List the peers a running daemon is connected to."""
    try:
        control = DaemonControl(api)
        found = anyio.run(control.list_peers)
    except FabstirError as exc:
        fail(str(exc), exit_code_for(exc))
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
