"""Which interfaces mDNS runs on: only those of the node's IPv4 listen addresses (pure,
given the list of the host's interfaces)."""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Mapping, Sequence

from fabstir_sidecar.discovery.mdns.addrs import ip4_host
from fabstir_sidecar.discovery.mdns.interfaces import local_ipv4_interfaces

__all__ = ["mdns_interfaces"]

log = logging.getLogger(__name__)


def mdns_interfaces(
    listen_addrs: Sequence[str], available: Mapping[str, str] | None = None
) -> list[str]:
    """The IPv4 interface addresses mDNS should run on, given the node's listen addresses.

    * ``/ip4/0.0.0.0/...``: every non-loopback IPv4 interface address (``available`` maps
      interface name to address; default :func:`local_ipv4_interfaces`);
    * a specific non-loopback ``/ip4/<ip>/...``: that address;
    * loopback (``127.0.0.0/8``) listen addresses contribute nothing: a node reachable only
      on this host has nothing to announce, and sends nothing on any network.

    IPv6 and DNS listen addresses are ignored (mDNS here is IPv4). An empty result means
    mDNS stays off; the reason is logged at INFO.
    """
    chosen: list[str] = []
    wildcard = False
    loopback = False
    for addr in listen_addrs:
        host = ip4_host(addr)
        if host is None:
            continue
        ip = ipaddress.IPv4Address(host)
        if ip.is_unspecified:
            wildcard = True
        elif ip.is_loopback:
            loopback = True
        elif host not in chosen:
            chosen.append(host)
    if wildcard:
        interfaces = local_ipv4_interfaces() if available is None else available
        for iface_ip in interfaces.values():
            try:
                ip = ipaddress.IPv4Address(iface_ip)
            except ValueError:
                continue
            if not (ip.is_loopback or ip.is_unspecified) and str(ip) not in chosen:
                chosen.append(str(ip))
    if not chosen:
        if wildcard:
            reason = "no non-loopback IPv4 interface is up"
        elif loopback:
            reason = "the node listens on loopback only"
        else:
            reason = "the node has no IPv4 listen address"
        log.info(f"mDNS off: {reason}", extra={"listen": list(listen_addrs)})
    return chosen
