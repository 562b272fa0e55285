"""libp2p mDNS peer discovery on the local network (p2pd has none).

Implements https://github.com/libp2p/specs/blob/master/discovery/mdns.md, compatible with go-,
rust- and js-libp2p. IPv4 only (the spec's ``224.0.0.251``). One job per module:

* :mod:`.addrs`: multiaddr predicates (what is announced, kept, dialed);
* :mod:`.dnsaddr`: peer names and the TXT ``dnsaddr=`` strings;
* :mod:`.packets`: queries and responses as DNS packets (zeroconf);
* :mod:`.interfaces`: the host's IPv4 interfaces (ifaddr);
* :mod:`.policy`: which of them mDNS runs on (:func:`mdns_interfaces`);
* :mod:`.sockets`: one multicast socket per interface;
* :mod:`.peers`: the table of discovered peers;
* :mod:`.service`: :class:`MdnsService`, which runs it all.
"""

from __future__ import annotations

from fabstir_sidecar.discovery.mdns.dnsaddr import (
    MAX_ADDRS_PER_PEER,
    MAX_PEERS,
    MAX_TXT_BYTES,
    build_txt,
    decode_txt_rdata,
    encode_txt_rdata,
    parse_dnsaddr_txt,
    random_peer_name,
)
from fabstir_sidecar.discovery.mdns.interfaces import local_ipv4_interfaces
from fabstir_sidecar.discovery.mdns.packets import RECORD_TTL, SERVICE_NAME
from fabstir_sidecar.discovery.mdns.policy import mdns_interfaces
from fabstir_sidecar.discovery.mdns.service import (
    DEFAULT_QUERY_INTERVAL,
    MIN_QUERY_INTERVAL,
    MdnsService,
    PeerCallback,
    PeerRemovedCallback,
)
from fabstir_sidecar.discovery.mdns.sockets import MDNS_GROUP, MDNS_PORT

__all__ = [
    "DEFAULT_QUERY_INTERVAL",
    "MAX_ADDRS_PER_PEER",
    "MAX_PEERS",
    "MAX_TXT_BYTES",
    "MDNS_GROUP",
    "MDNS_PORT",
    "MIN_QUERY_INTERVAL",
    "RECORD_TTL",
    "SERVICE_NAME",
    "MdnsService",
    "PeerCallback",
    "PeerRemovedCallback",
    "build_txt",
    "decode_txt_rdata",
    "encode_txt_rdata",
    "local_ipv4_interfaces",
    "mdns_interfaces",
    "parse_dnsaddr_txt",
    "random_peer_name",
]
