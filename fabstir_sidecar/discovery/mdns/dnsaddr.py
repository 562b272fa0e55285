"""The TXT side of libp2p mDNS: peer names and ``dnsaddr=<multiaddr>`` strings (pure).

See https://github.com/libp2p/specs/blob/master/discovery/mdns.md: each address of a peer is
one TXT string ``dnsaddr=<multiaddr>/p2p/<peer id>``, and each node announces itself under
a random peer name.
"""

from __future__ import annotations

import logging
import secrets
import string
from collections.abc import Iterable
from typing import Final

from fabstir_sidecar.core.errors import FabstirError, InvalidMultiaddrError
from fabstir_sidecar.discovery.mdns.addrs import double_p2p, is_unspecified, split_peer_multiaddr

__all__ = [
    "DNSADDR_PREFIX",
    "MAX_ADDRS_PER_PEER",
    "MAX_PEERS",
    "MAX_TXT_BYTES",
    "MAX_TXT_STRING",
    "build_txt",
    "decode_txt_rdata",
    "encode_txt_rdata",
    "parse_dnsaddr_txt",
    "random_peer_name",
]

log = logging.getLogger(__name__)

MAX_ADDRS_PER_PEER: Final = 16
MAX_PEERS: Final = 256
MAX_TXT_STRING: Final = 255  # one DNS <character-string>
MAX_TXT_BYTES: Final = 1300  # our TXT rdata: keeps a response in one Ethernet frame

DNSADDR_PREFIX: Final = "dnsaddr="
PEER_NAME_ALPHABET: Final = string.ascii_letters + string.digits
PEER_NAME_MIN: Final = 32
PEER_NAME_MAX: Final = 63


def random_peer_name() -> str:
    """A fresh random peer name: 32-63 ASCII letters and digits (as rust-libp2p)."""
    length = PEER_NAME_MIN + secrets.randbelow(PEER_NAME_MAX - PEER_NAME_MIN + 1)
    return "".join(secrets.choice(PEER_NAME_ALPHABET) for _ in range(length))


def build_txt(
    addrs: Iterable[str], *, max_addrs: int = MAX_ADDRS_PER_PEER, max_bytes: int = MAX_TXT_BYTES
) -> list[bytes]:
    """The TXT strings announcing ``addrs``: ``dnsaddr=<multiaddr>/p2p/<peer id>`` each.

    ``addrs`` are full multiaddrs of one peer, each ending in ``/p2p/<peer id>`` (the id is
    not appended again). Duplicates are dropped; addresses whose string would exceed a DNS
    character-string (255 bytes) are skipped; at most ``max_addrs`` strings and
    ``max_bytes`` of TXT rdata are returned (the rest is dropped, logged at debug).

    Raises :class:`~fabstir_sidecar.core.errors.InvalidMultiaddrError` for an address that does
    not parse, lacks ``/p2p/<id>``, carries ``/p2p/<id>`` twice, or names another peer.
    """
    out: list[bytes] = []
    total = 0
    peer: str | None = None
    for addr in addrs:
        address, peer_id = split_peer_multiaddr(addr, name="addrs")
        if double_p2p(address):
            raise InvalidMultiaddrError("addrs", addr, "contains /p2p/<peer id> twice")
        if peer is None:
            peer = peer_id
        elif peer_id != peer:
            raise InvalidMultiaddrError("addrs", addr, f"names peer {peer_id}, not {peer}")
        text = f"{DNSADDR_PREFIX}{address}/p2p/{peer_id}".encode()
        if len(text) > MAX_TXT_STRING:
            log.debug("mDNS: address too long for a TXT string", extra={"address": addr})
            continue
        if text in out:
            continue
        if len(out) >= max_addrs or total + 1 + len(text) > max_bytes:
            log.debug("mDNS: not announcing more addresses", extra={"dropped": addr})
            continue
        out.append(text)
        total += 1 + len(text)
    return out


def encode_txt_rdata(strings: Iterable[bytes]) -> bytes:
    """TXT rdata: each string prefixed by its length (RFC 1035 <character-string>)."""
    parts = []
    for item in strings:
        if len(item) > MAX_TXT_STRING:
            raise ValueError(f"TXT string of {len(item)} bytes exceeds {MAX_TXT_STRING}")
        parts.append(bytes([len(item)]) + item)
    return b"".join(parts) or b"\x00"  # RFC 6763 6.1: an empty TXT has one empty string


def decode_txt_rdata(rdata: bytes) -> list[bytes]:
    """Split TXT rdata into its strings; a truncated last string is dropped."""
    out: list[bytes] = []
    offset = 0
    while offset < len(rdata):
        length = rdata[offset]
        end = offset + 1 + length
        if end > len(rdata):
            break
        out.append(rdata[offset + 1 : end])
        offset = end
    return out


def parse_dnsaddr_txt(
    strings: Iterable[bytes | str],
    *,
    own_peer_id: str | None = None,
    max_addrs_per_peer: int = MAX_ADDRS_PER_PEER,
    max_peers: int = MAX_PEERS,
) -> dict[str, list[str]]:
    """Peers and their full multiaddrs (``.../p2p/<id>``) from TXT strings.

    Strings other than ``dnsaddr=<multiaddr>/p2p/<peer id>`` (key case-insensitive) are
    ignored, as are multiaddrs that do not parse, carry ``/p2p/<id>`` twice, or have an
    unspecified host; so are ``own_peer_id``'s. Duplicates are dropped; at most
    ``max_addrs_per_peer`` addresses per peer and ``max_peers`` peers (first seen first).
    """
    result: dict[str, list[str]] = {}
    for raw in strings:
        if isinstance(raw, bytes):
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError:
                continue
        else:
            text = raw
        key, sep, value = text.partition("=")
        if not sep or key.lower() != "dnsaddr":
            continue
        try:
            address, peer_id = split_peer_multiaddr(value, name="dnsaddr")
        except (FabstirError, ValueError):
            continue
        if double_p2p(address) or is_unspecified(address) or peer_id == own_peer_id:
            continue
        addrs = result.get(peer_id)
        if addrs is None:
            if len(result) >= max_peers:
                continue
            addrs = result[peer_id] = []
        full = f"{address}/p2p/{peer_id}"
        if full not in addrs and len(addrs) < max_addrs_per_peer:
            addrs.append(full)
    return result
