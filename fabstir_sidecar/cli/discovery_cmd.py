"""``bootstrap``, ``find`` and ``diagnose``: discovery from the shell."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import anyio
import typer

from fabstir_sidecar.cli.common import (
    BOOTSTRAP_MAX_CONNECTIONS,
    AnnounceOpt,
    BootstrapMaxConnOpt,
    BootstrapOpt,
    IdentityOpt,
    JsonDocOpt,
    JsonOpt,
    ListenOpt,
    P2pdOpt,
    node_config,
    unless_env,
)
from fabstir_sidecar.cli.output import (
    emit_event,
    exit_code_for,
    fail,
    run_until_shutdown_signal,
    say,
)
from fabstir_sidecar.core.errors import FabstirError, FabstirTimeoutError, NoMatchingHostError
from fabstir_sidecar.core.settings import NodeConfig
from fabstir_sidecar.daemon.binary import find_p2pd
from fabstir_sidecar.discovery.matching import HostCriteria, summarize
from fabstir_sidecar.node.manager import DiscoveryManager

EXIT_NO_MATCH = 3
ROUTING_TABLE_WAIT = 5.0  # diagnose: seconds to wait for the DHT routing table to fill


def bootstrap(
    listen: ListenOpt = None,
    identity: IdentityOpt = None,
    announce: AnnounceOpt = None,
    json_out: JsonOpt = False,
    p2pd: P2pdOpt = None,
    max_connections: BootstrapMaxConnOpt = None,
) -> None:
    """Run a bootstrap / DHT server node until SIGINT/SIGTERM (prints the same ready line)."""
    try:
        cfg = node_config(
            listen=listen,
            bootstrap=None,
            identity=identity,
            p2pd=p2pd,
            dht=True,
            dht_mode="server",
            announce=tuple(announce) if announce else None,
            max_connections=unless_env(
                max_connections, "P2P_MAX_CONNECTIONS", BOOTSTRAP_MAX_CONNECTIONS
            ),
        )
        anyio.run(_run_bootstrap, cfg, json_out)
    except FabstirError as exc:
        fail(str(exc), exit_code_for(exc))


async def _run_bootstrap(cfg: NodeConfig, json_out: bool) -> None:
    await run_until_shutdown_signal(lambda: _serve_bootstrap(cfg, json_out))


async def _serve_bootstrap(cfg: NodeConfig, json_out: bool) -> None:
    async with DiscoveryManager(cfg) as node:
        addrs = await node.get_addrs()
        if json_out:
            emit_event("ready", peer_id=node.peer_id, addrs=addrs)
        else:
            say(f"bootstrap node {node.peer_id}")
            for addr in addrs:
                say(f"listening: {addr}")
        await anyio.sleep_forever()


def find(
    model: Annotated[
        list[str] | None, typer.Option("--model", "-m", help="Required model.")
    ] = None,
    min_reputation: Annotated[int | None, typer.Option("--min-reputation")] = None,
    max_latency: Annotated[float | None, typer.Option("--max-latency", help="ms")] = None,
    min_uptime: Annotated[int | None, typer.Option("--min-uptime", help="seconds")] = None,
    location: Annotated[str | None, typer.Option("--location", help="ISO country code")] = None,
    bootstrap: BootstrapOpt = None,
    listen: ListenOpt = None,
    timeout: Annotated[
        float, typer.Option("--timeout", help="Seconds for the whole search.")
    ] = 15.0,
    all_hosts: Annotated[bool, typer.Option("--all", help="Print every match, ranked.")] = False,
    json_out: JsonDocOpt = False,
    p2pd: P2pdOpt = None,
    data_dir: Annotated[Path | None, typer.Option("--data-dir", help="Peer cache dir.")] = None,
) -> None:
    """Find the best host (or all, ranked). No match: exit 3 with the reason on stderr."""
    try:
        criteria = HostCriteria(
            min_reputation=min_reputation,
            max_latency=max_latency,
            required_models=tuple(model or ()),
            min_uptime=min_uptime,
            location=location,
        )
        cfg = node_config(
            listen=listen, bootstrap=bootstrap, identity=None, p2pd=p2pd, data_dir=data_dir
        )
        ranked = anyio.run(_find, cfg, criteria, timeout)
    except NoMatchingHostError as exc:
        fail(str(exc), EXIT_NO_MATCH)
    except FabstirError as exc:
        fail(str(exc), exit_code_for(exc))
    rows = summarize(ranked)
    out: Any = rows if all_hosts else rows[0]
    # JSON either way: one line with --json, indented for people without it.
    say(json.dumps(out, ensure_ascii=False, indent=None if json_out else 2))


async def _find(cfg: NodeConfig, criteria: HostCriteria, timeout: float) -> list[Any]:
    try:
        with anyio.fail_after(timeout):
            async with DiscoveryManager(cfg) as node:
                if cfg.bootstrap and not any(r.ok for r in node.bootstrap_results):
                    reasons = "; ".join(f"{r.address}: {r.error}" for r in node.bootstrap_results)
                    raise FabstirError(f"no bootstrap peer reachable ({reasons})")
                if node.mdns_active:
                    # mDNS answers take up to a second after start; give them a moment.
                    await node.wait_for_mdns_peer(min(2.0, timeout / 4))
                return await node.find_hosts(criteria)
    except TimeoutError:
        raise FabstirTimeoutError(f"search did not finish within {timeout:.1f}s") from None


def diagnose(
    bootstrap: BootstrapOpt = None,
    listen: ListenOpt = None,
    announce: AnnounceOpt = None,
    json_out: JsonDocOpt = False,
    p2pd: P2pdOpt = None,
) -> None:
    """Start a node and report: running, peers, each bootstrap peer, DHT table, addresses."""
    try:
        cfg = node_config(
            listen=listen,
            bootstrap=bootstrap,
            identity=None,
            p2pd=p2pd,
            announce=tuple(announce) if announce else None,
        )
        report = anyio.run(_diagnose, cfg)
    except FabstirError as exc:
        fail(str(exc), exit_code_for(exc))
    # Either way, an unreachable bootstrap peer is a failure (exit 1), as in text mode.
    unreachable = not all(e["reachable"] for e in report["bootstrap"])
    if json_out:
        say(json.dumps(report, ensure_ascii=False))
        if unreachable:
            sys.exit(1)
        return
    say(f"running:          {report['running']}")
    say(f"p2pd:             {report['p2pd']}")
    say(f"peer id:          {report['peer_id']}")
    for addr in report["listen_addrs"]:
        say(f"listen address:   {addr}")
    for addr in report["announce"]:
        say(f"announced:        {addr}")
    say(f"connected peers:  {len(report['connected_peers'])}")
    for entry in report["bootstrap"]:
        state = "reachable" if entry["reachable"] else f"UNREACHABLE ({entry['error']})"
        say(f"bootstrap:        {entry['address']}: {state}")
    say(f"DHT:              {report['dht']}")
    if unreachable:
        sys.exit(1)


async def _diagnose(cfg: NodeConfig) -> dict[str, Any]:
    async with DiscoveryManager(cfg) as node:
        dht: dict[str, Any] = {"enabled": cfg.enable_dht, "mode": cfg.dht_mode}
        if cfg.enable_dht:
            # Right after start the routing table is empty until identify has run on the
            # first connections: wait for it (bounded), as a lookup does, before counting.
            if await node.get_connected_peers():
                await node.discovery.wait_for_routing_table(ROUTING_TABLE_WAIT)
            try:
                closest = await node.control.dht_closest_peers(node.peer_id.encode(), timeout=5)
                dht["routing_table_peers"] = len(closest)
            except FabstirError as exc:
                dht["routing_table_peers"] = 0
                dht["error"] = str(exc)
        return {
            "running": node.is_running(),
            "p2pd": str(find_p2pd(cfg.p2pd_path)) if cfg.control_addr is None else None,
            "peer_id": node.peer_id,
            "listen_addrs": await node.get_addrs(),
            "announce": list(cfg.announce),
            "connected_peers": await node.get_connected_peers(),
            "bootstrap": [
                {"address": r.address, "reachable": r.ok, "error": r.error}
                for r in node.bootstrap_results
            ],
            "dht": dht,
        }
