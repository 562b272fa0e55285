"""``bootstrap``, ``find`` and ``diagnose``: discovery from the shell."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import anyio
import typer

from fabstir_sidecar.cli import common as opt
from fabstir_sidecar.cli.output import exit_code_for, fail, failures_reported, say
from fabstir_sidecar.cli.serving import serve_role
from fabstir_sidecar.core.errors import FabstirError, NoMatchingHostError
from fabstir_sidecar.discovery.matching import HostCriteria, summarize
from fabstir_sidecar.tools.diagnose import DiagnoseReport
from fabstir_sidecar.tools.diagnose import diagnose as run_diagnose
from fabstir_sidecar.tools.find import DEFAULT_FIND_TIMEOUT, find_once

EXIT_NO_MATCH = 3


def bootstrap(
    listen: opt.ListenOpt = None,
    identity: opt.IdentityOpt = None,
    announce: opt.AnnounceOpt = None,
    json_out: opt.JsonOpt = False,
    p2pd: opt.P2pdOpt = None,
    max_connections: opt.BootstrapMaxConnOpt = None,
    relay_service: opt.RelayServiceOpt = None,
    autonat: opt.AutonatOpt = None,
    hole_punching: opt.HolePunchOpt = None,
    force_reachability: opt.ReachabilityOpt = None,
    metrics_addr: opt.MetricsAddrOpt = None,
) -> None:
    """Run a bootstrap / DHT server node until SIGINT/SIGTERM (prints the same ready line).

    It relays circuits for hosts behind NAT (every p2pd does; docs/nat.md)."""
    serve_role("bootstrap", locals(), lambda peer_id: f"bootstrap node {peer_id}", messages=False)


def find(
    model: Annotated[
        list[str] | None, typer.Option("--model", "-m", help="Required model.")
    ] = None,
    min_reputation: Annotated[int | None, typer.Option("--min-reputation")] = None,
    max_latency: Annotated[float | None, typer.Option("--max-latency", help="ms")] = None,
    min_uptime: Annotated[int | None, typer.Option("--min-uptime", help="seconds")] = None,
    location: Annotated[str | None, typer.Option("--location", help="ISO country code")] = None,
    bootstrap: opt.BootstrapOpt = None,
    listen: opt.ListenOpt = None,
    timeout: Annotated[
        float, typer.Option("--timeout", help="Seconds for the whole search.")
    ] = DEFAULT_FIND_TIMEOUT,
    all_hosts: Annotated[bool, typer.Option("--all", help="Print every match, ranked.")] = False,
    json_out: opt.JsonDocOpt = False,
    p2pd: opt.P2pdOpt = None,
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
        cfg = opt.command_config("client", locals())
        ranked = anyio.run(lambda: find_once(cfg, criteria, timeout=timeout))
    except NoMatchingHostError as exc:
        fail(str(exc), EXIT_NO_MATCH)
    except FabstirError as exc:
        fail(str(exc), exit_code_for(exc))
    rows = summarize(ranked)
    out: Any = rows if all_hosts else rows[0]
    # JSON either way: one line with --json, indented for people without it.
    say(json.dumps(out, ensure_ascii=False, indent=None if json_out else 2))


def diagnose(
    bootstrap: opt.BootstrapOpt = None,
    listen: opt.ListenOpt = None,
    announce: opt.AnnounceOpt = None,
    json_out: opt.JsonDocOpt = False,
    p2pd: opt.P2pdOpt = None,
    relay_client: opt.RelayClientOpt = None,
    relay: opt.RelayOpt = None,
    nat_portmap: opt.NatPortmapOpt = None,
    force_reachability: opt.ReachabilityOpt = None,
    reachability_wait: Annotated[
        float,
        typer.Option("--reachability-wait", help="Seconds to give AutoNAT for a verdict."),
    ] = 0.0,
) -> None:
    """Start a node and report: running, peers, each bootstrap peer, DHT table, addresses,
    and whether it is reachable from outside (public / private / unknown) and how."""
    with failures_reported():
        cfg = opt.command_config("client", locals())
        report = anyio.run(lambda: run_diagnose(cfg, reachability_wait=reachability_wait))
    if json_out:
        say(json.dumps(report.to_json(), ensure_ascii=False))
    else:
        _print_report(report)
    # Either way, an unreachable bootstrap peer is a failure (exit 1).
    if not report.ok:
        sys.exit(1)


def _print_report(report: DiagnoseReport) -> None:
    say(f"running:          {report.running}")
    say(f"p2pd:             {report.p2pd}")
    say(f"peer id:          {report.peer_id}")
    for addr in report.listen_addrs:
        say(f"listen address:   {addr}")
    for addr in report.announce:
        say(f"announced:        {addr}")
    say(f"connected peers:  {len(report.connected_peers)}")
    for entry in report.bootstrap:
        state = "reachable" if entry.ok else f"UNREACHABLE ({entry.error})"
        say(f"bootstrap:        {entry.address}: {state}")
    say(f"DHT:              {report.dht.to_json()}")
    found = report.reachability
    if found is not None:
        say(f"reachability:     {found.status} ({found.source})")
        for label, addrs in (("mapped", found.mapped_addrs), ("relayed", found.relayed_addrs)):
            for addr in addrs:
                say(f"{label + ' address:':<18}{addr}")
        for note in found.notes:
            say(f"note:             {note}")


COMMANDS = (bootstrap, find, diagnose)
"""The commands of this module, in the order ``fabstir-sidecar --help`` lists them."""
