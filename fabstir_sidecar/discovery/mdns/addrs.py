"""Multiaddr predicates of libp2p mDNS: which addresses are announced, kept or dialed (pure).

This is the only mDNS module that imports the core multiaddr and peer-id helpers, so they
can be repointed in one place.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Sequence

from fabstir_sidecar.core.errors import FabstirError
from fabstir_sidecar.core.multiaddr import split_peer_multiaddr

__all__ = [
    "canonical_own_addrs",
    "double_p2p",
    "ip4_host",
    "is_dns_addr",
    "is_unspecified",
    "split_peer_multiaddr",
    "usable_remote",
]

log = logging.getLogger(__name__)


def double_p2p(address: str) -> bool:
    """True if ``address`` (the part before the final ``/p2p/<id>``) ends in ``/p2p/<x>``."""
    parts = address.split("/")
    return len(parts) >= 3 and parts[-2] == "p2p"


def is_unspecified(address: str) -> bool:
    return address.startswith(("/ip4/0.0.0.0/", "/ip6/::/"))


def ip4_host(addr: str) -> str | None:
    """The IPv4 host of ``/ip4/<host>/...``, else ``None``."""
    parts = addr.split("/")
    if len(parts) >= 3 and parts[0] == "" and parts[1] == "ip4":
        try:
            return str(ipaddress.IPv4Address(parts[2]))
        except ValueError:
            return None
    return None


def is_dns_addr(addr: str) -> bool:
    return addr.startswith(("/dns/", "/dns4/", "/dns6/"))


def usable_remote(addr: str) -> bool:
    """Whether an address learnt from the network may be dialed: no loopback addresses
    (a LAN peer's 127.0.0.1 is our own host: never dial it on someone's say-so)."""
    host = ip4_host(addr)
    if host is not None:
        return not ipaddress.IPv4Address(host).is_loopback
    return not addr.startswith(("/ip6/::1/", "/dns/localhost/", "/dns4/localhost/"))


def canonical_own_addrs(addrs: Sequence[str], peer_id: str) -> list[str]:
    """``peer_id``'s full multiaddrs (``.../p2p/<peer_id>``) among ``addrs``, in order.

    A bare transport address is taken as ours; another peer's address, or one that does
    not parse, is skipped with a warning.
    """
    out: list[str] = []
    for addr in addrs:
        try:
            address, owner = split_peer_multiaddr(addr, name="addrs")
        except FabstirError:
            try:  # a bare transport address: it is ours
                address, owner = split_peer_multiaddr(f"{addr}/p2p/{peer_id}", name="addrs")
            except FabstirError as exc:
                log.warning("mDNS: not announcing address", extra={"error": str(exc)})
                continue
        if owner != peer_id or double_p2p(address):
            log.warning("mDNS: not announcing another peer's address", extra={"addr": addr})
            continue
        full = f"{address}/p2p/{owner}"
        if full not in out:
            out.append(full)
    return out
