"""The diagnose report: start a node, look at it (addresses, peers, bootstrap peers, DHT,
reachability from outside), stop.

For checking a node's network settings before it runs for real: the same ``NodeConfig``,
a report of what came of it. Behind NAT the reachability part says what others see and
what to do (open a port, enable UPnP / NAT-PMP, rely on the relay): see docs/nat.md.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Final

import anyio

from fabstir_sidecar.core.errors import FabstirError
from fabstir_sidecar.core.settings import NodeConfig
from fabstir_sidecar.daemon.binary import find_p2pd
from fabstir_sidecar.node.launch import metrics_addr
from fabstir_sidecar.node.manager import BootstrapResult, DiscoveryManager
from fabstir_sidecar.node.reachability import Reachability, reachability_of

__all__ = ["DHT_QUERY_TIMEOUT", "ROUTING_TABLE_WAIT", "DhtReport", "DiagnoseReport", "diagnose"]

ROUTING_TABLE_WAIT: Final = 5.0
"""Seconds to wait for the DHT routing table to fill after the first connection."""
DHT_QUERY_TIMEOUT: Final = 5.0
"""Deadline (seconds) of the GET_CLOSEST_PEERS query that counts the routing table."""


@dataclass(frozen=True, slots=True)
class DhtReport:
    enabled: bool
    mode: str
    routing_table_peers: int | None = None
    """Peers GET_CLOSEST_PEERS returned (at most 20); None when the DHT is off."""
    error: str | None = None
    """Why that query failed (then ``routing_table_peers`` is 0)."""

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"enabled": self.enabled, "mode": self.mode}
        if self.routing_table_peers is not None:
            out["routing_table_peers"] = self.routing_table_peers
        if self.error is not None:
            out["error"] = self.error
        return out


@dataclass(frozen=True, slots=True)
class DiagnoseReport:
    running: bool
    p2pd: str | None
    """The p2pd binary the node ran; None when attached to a running daemon."""
    peer_id: str
    listen_addrs: tuple[str, ...]
    """What p2pd reports (the announced addresses when ``announce`` is set)."""
    announce: tuple[str, ...]
    connected_peers: tuple[str, ...]
    bootstrap: tuple[BootstrapResult, ...]
    dht: DhtReport
    reachability: Reachability | None = None

    @property
    def ok(self) -> bool:
        """Every bootstrap peer was reachable."""
        return all(result.ok for result in self.bootstrap)

    def to_json(self) -> dict[str, Any]:
        """The report as the ``diagnose --json`` document (docs/cli.md)."""
        return {
            "running": self.running,
            "p2pd": self.p2pd,
            "peer_id": self.peer_id,
            "listen_addrs": list(self.listen_addrs),
            "announce": list(self.announce),
            "connected_peers": list(self.connected_peers),
            "bootstrap": [
                {"address": r.address, "reachable": r.ok, "error": r.error} for r in self.bootstrap
            ],
            "dht": self.dht.to_json(),
            "reachability": self.reachability.to_json() if self.reachability else None,
        }


async def _dht_report(node: DiscoveryManager, config: NodeConfig) -> DhtReport:
    if not config.enable_dht:
        return DhtReport(enabled=False, mode=config.dht_mode)
    # Right after start the routing table is empty until identify has run on the first
    # connections: wait for it (bounded), as a lookup does, before counting.
    if await node.get_connected_peers():
        await node.discovery.wait_for_routing_table(ROUTING_TABLE_WAIT)
    try:
        closest = await node.control.dht_closest_peers(
            node.peer_id.encode(), timeout=DHT_QUERY_TIMEOUT
        )
    except FabstirError as exc:
        return DhtReport(True, config.dht_mode, routing_table_peers=0, error=str(exc))
    return DhtReport(True, config.dht_mode, routing_table_peers=len(closest))


async def _reachability(node: DiscoveryManager, wait: float) -> Reachability:
    """The node's reachability; up to ``wait`` seconds for AutoNAT to reach a verdict."""
    found = await reachability_of(node)
    with anyio.move_on_after(wait):
        while found.status == "unknown" and found.metrics is not None:
            await anyio.sleep(0.5)
            found = await reachability_of(node)
    return found


async def diagnose(config: NodeConfig, *, reachability_wait: float = 0.0) -> DiagnoseReport:
    """Start a node with ``config``, report on it, stop it. ``reachability_wait``: seconds
    to give AutoNAT for a verdict (it needs about 10-20 s and peers running ``-autonat``)."""
    if config.control_addr is None and config.metrics_addr is None:
        # the metrics endpoint is where AutoNAT's verdict is read (loopback, free port)
        config = dataclasses.replace(
            config, metrics_addr=metrics_addr(dataclasses.replace(config, enable_autonat=True))
        )
    async with DiscoveryManager(config) as node:
        dht = await _dht_report(node, config)
        reachability = await _reachability(node, reachability_wait)
        return DiagnoseReport(
            running=node.is_running(),
            p2pd=str(find_p2pd(config.p2pd_path)) if config.control_addr is None else None,
            peer_id=node.peer_id,
            listen_addrs=tuple(await node.get_addrs()),
            announce=config.announce,
            connected_peers=tuple(await node.get_connected_peers()),
            bootstrap=tuple(node.bootstrap_results),
            dht=dht,
            reachability=reachability,
        )
