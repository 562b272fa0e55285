"""libp2p mDNS queries and responses as DNS packets, built and read with zeroconf (pure).

* a query is one question ``PTR _p2p._udp.local`` (class IN, multicast reply wanted);
* a response has the answer ``PTR _p2p._udp.local -> <peer-name>._p2p._udp.local`` and the
  additional record ``TXT <peer-name>._p2p._udp.local`` (the ``dnsaddr=`` strings), no
  question section, id 0, flags QR|AA. rust-libp2p reads the PTR from the answers and the
  TXT from the additionals; js-libp2p reads both sections.

Encoding, name compression and defensive decoding of hostile packets are python-zeroconf's
``DNSOutgoing``/``DNSIncoming`` and its record classes. They are imported from the top-level
``zeroconf`` package, which re-exports them for compatibility (not from its private
``zeroconf._dns``/``zeroconf._protocol`` modules), hence the mypy ``implicit_reexport``
override for ``zeroconf`` in pyproject.toml. zeroconf's documented API (``Zeroconf``,
``ServiceInfo``, ``ServiceBrowser``) cannot produce this flavour of mDNS: it answers with
DNS-SD records (SRV, A) as well, sends legacy unicast replies that repeat the question
(rust-libp2p takes those for queries) and runs its own asyncio thread and sockets, without
the per-interface isolation of :mod:`.sockets`.
"""

from __future__ import annotations

import dataclasses
from typing import Final

from zeroconf import DNSIncoming, DNSOutgoing, DNSPointer, DNSQuestion, DNSText

from fabstir_sidecar.discovery.mdns.dnsaddr import decode_txt_rdata, encode_txt_rdata

__all__ = [
    "RECORD_TTL",
    "SERVICE_NAME",
    "Query",
    "Response",
    "build_query",
    "build_response",
    "parse_packet",
]

SERVICE_NAME: Final = "_p2p._udp.local."
RECORD_TTL: Final = 120  # seconds, as js-libp2p (RFC 6762 recommends 120 s for such records)

_TYPE_PTR: Final = 12
_TYPE_TXT: Final = 16
_TYPE_ANY: Final = 255
_CLASS_IN: Final = 1
_CLASS_UNIQUE: Final = 0x8000  # the cache-flush bit on records
_FLAGS_QR_RESPONSE: Final = 0x8000
_FLAGS_AA: Final = 0x0400
_FLAGS_OPCODE: Final = 0x7800
_FLAGS_RCODE: Final = 0x000F
_MAX_RECORDS_PER_PACKET: Final = 64  # records of a received packet we look at


@dataclasses.dataclass(frozen=True, slots=True)
class Query:
    """A received query: whether it asks for our service, and the instances it already
    knows (known-answer pointers: lower-case instance name -> largest TTL)."""

    asks_service: bool
    known: dict[str, int]


@dataclasses.dataclass(frozen=True, slots=True)
class Response:
    """A received response: its service PTRs (lower-case instance -> TTL) and its TXT
    records by lower-case instance name (strings of all of them, smallest TTL)."""

    pointers: dict[str, int]
    texts: dict[str, tuple[list[bytes], int]]


def build_query() -> list[bytes]:
    """Our query packet(s): one question ``PTR _p2p._udp.local``."""
    out = DNSOutgoing(0, multicast=True)
    out.add_question(DNSQuestion(SERVICE_NAME, _TYPE_PTR, _CLASS_IN))
    return out.packets()


def build_response(instance: str, txt: list[bytes], *, ttl: int = RECORD_TTL) -> list[bytes]:
    """Our response packet(s) announcing ``instance`` with the TXT strings ``txt``
    (``ttl`` 0: the goodbye, RFC 6762 10.1)."""
    out = DNSOutgoing(_FLAGS_QR_RESPONSE | _FLAGS_AA, multicast=True)
    out.add_answer_at_time(DNSPointer(SERVICE_NAME, _TYPE_PTR, _CLASS_IN, ttl, instance), 0)
    rdata = encode_txt_rdata(txt)
    out.add_additional_answer(DNSText(instance, _TYPE_TXT, _CLASS_IN | _CLASS_UNIQUE, ttl, rdata))
    return out.packets()


def parse_packet(data: bytes, source: tuple[str, int]) -> Query | Response | None:
    """Read a received packet; ``None`` for one to ignore (invalid, or another opcode or
    rcode: RFC 6762 18.3, 18.11). Only the first records of a packet are looked at.
    zeroconf may raise on hostile input: callers drop the packet."""
    msg = DNSIncoming(data, (source[0], source[1]))
    if not msg.valid or msg.flags & (_FLAGS_OPCODE | _FLAGS_RCODE):
        return None
    records = msg.answers()[:_MAX_RECORDS_PER_PACKET]
    if msg.is_query():
        asks = any(
            q.name.lower() == SERVICE_NAME and q.type in (_TYPE_PTR, _TYPE_ANY)
            for q in msg.questions
        )
        known: dict[str, int] = {}
        for record in records:
            if isinstance(record, DNSPointer) and record.name.lower() == SERVICE_NAME:
                alias = record.alias.lower()
                known[alias] = max(record.ttl, known.get(alias, 0))
        return Query(asks, known)
    pointers: dict[str, int] = {}
    for record in records:
        if (
            isinstance(record, DNSPointer)
            and record.type == _TYPE_PTR
            and record.name.lower() == SERVICE_NAME
        ):
            pointers[record.alias.lower()] = record.ttl
    texts: dict[str, tuple[list[bytes], int]] = {}
    for record in records:
        if isinstance(record, DNSText):
            instance = record.name.lower()
            strings, ttl = texts.get(instance, ([], record.ttl))
            strings.extend(decode_txt_rdata(record.text))
            texts[instance] = (strings, min(ttl, record.ttl))
    return Response(pointers, texts)
