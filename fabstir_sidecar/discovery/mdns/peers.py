"""The table of peers heard over mDNS: what each interface heard, merged, expiring (pure).

A peer may be heard on several interfaces; its addresses are those of every interface that
still has a live record of it (in interface order, at most :data:`MAX_ADDRS_PER_PEER`). The
table holds at most :data:`MAX_PEERS` peers. Changes are reported through the two callbacks:
``on_found(peer, addrs)`` for a new peer or a changed address set, ``on_gone(peer)`` once a
reported peer has no live record left. Time is passed in, so the table does no I/O.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Sequence

from fabstir_sidecar.discovery.mdns.dnsaddr import MAX_ADDRS_PER_PEER, MAX_PEERS

__all__ = ["PeerTable"]

log = logging.getLogger(__name__)


@dataclasses.dataclass(slots=True)
class _Source:
    """What one interface last heard about a peer."""

    instance: str
    addrs: list[str]
    expires: float


@dataclasses.dataclass(slots=True)
class _Peer:
    sources: dict[str, _Source] = dataclasses.field(default_factory=dict)
    addrs: list[str] = dataclasses.field(default_factory=list)


class PeerTable:
    """Peers by id, learnt per interface (IPv4 interface address) and instance name."""

    def __init__(
        self,
        interfaces: Sequence[str],
        *,
        on_found: Callable[[str, list[str]], None],
        on_gone: Callable[[str], None],
    ) -> None:
        self._interfaces = list(interfaces)
        self._on_found = on_found
        self._on_gone = on_gone
        self._peers: dict[str, _Peer] = {}

    def snapshot(self) -> dict[str, list[str]]:
        """Peer id -> full multiaddrs, as of the last :meth:`expire`."""
        return {peer: list(entry.addrs) for peer, entry in self._peers.items()}

    def peer_by_instance(self, iface_ip: str, instance: str) -> str | None:
        """The peer that ``iface_ip`` heard under ``instance``, if any."""
        for peer, entry in self._peers.items():
            source = entry.sources.get(iface_ip)
            if source is not None and source.instance == instance:
                return peer
        return None

    def learn(
        self, iface_ip: str, instance: str, peer: str, addrs: list[str], expires: float, now: float
    ) -> None:
        """``iface_ip`` heard ``peer`` at ``addrs`` under ``instance`` until ``expires``."""
        entry = self._peers.get(peer)
        if entry is None:
            self.expire(now)
            if len(self._peers) >= MAX_PEERS:
                log.debug("mDNS: peer table full, ignoring peer", extra={"peer": peer})
                return
            entry = self._peers[peer] = _Peer()
        entry.sources[iface_ip] = _Source(instance, addrs, expires)
        self._refresh(peer, entry, notify=True)

    def goodbye(self, iface_ip: str, instance: str) -> None:
        """The peer under ``instance`` said goodbye (TTL 0) on ``iface_ip``."""
        peer = self.peer_by_instance(iface_ip, instance)
        if peer is not None:
            entry = self._peers[peer]
            del entry.sources[iface_ip]
            log.debug("mDNS: peer said goodbye", extra={"peer": peer, "interface": iface_ip})
            self._refresh(peer, entry, notify=True)

    def expire(self, now: float) -> None:
        """Drop the records that expired by ``now`` (gone peers are reported)."""
        for peer, entry in list(self._peers.items()):
            stale = [ip for ip, source in entry.sources.items() if source.expires <= now]
            for ip in stale:
                del entry.sources[ip]
            if stale:
                self._refresh(peer, entry, notify=False)

    def _refresh(self, peer: str, entry: _Peer, *, notify: bool) -> None:
        """Recompute a peer's addresses from its sources; report a changed set."""
        merged: list[str] = []
        for ip in self._interfaces:
            source = entry.sources.get(ip)
            for addr in source.addrs if source else ():
                if addr not in merged and len(merged) < MAX_ADDRS_PER_PEER:
                    merged.append(addr)
        if not merged:
            del self._peers[peer]
            if entry.addrs:  # it was reported: report that it is gone
                log.debug("mDNS: peer gone", extra={"peer": peer})
                self._on_gone(peer)
            return
        changed = set(merged) != set(entry.addrs)
        entry.addrs = merged
        if changed and notify:
            log.debug("mDNS: peer discovered", extra={"peer": peer, "addrs": merged})
            self._on_found(peer, list(merged))
