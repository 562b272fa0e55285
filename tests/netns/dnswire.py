"""A minimal DNS wire codec for the mDNS tests, independent of zeroconf.

The service encodes and decodes with zeroconf; checking its packets with zeroconf again
would prove little. This module decodes packets section by section (rust-libp2p reads the
PTR from *answers* and the TXT from *additionals*, so the section matters) and builds the
packets rust-libp2p and js-libp2p (multicast-dns) send, byte for byte as their encoders do.
"""

from __future__ import annotations

import dataclasses
import secrets
import struct

import base58

TYPE_PTR = 12
TYPE_TXT = 16
CLASS_IN = 1
CACHE_FLUSH = 0x8000
SERVICE = "_p2p._udp.local"


def fake_peer_id() -> str:
    """A well-formed Ed25519 peer id (identity multihash of a protobuf public key)."""
    key = b"\x08\x01\x12\x20" + secrets.token_bytes(32)
    return base58.b58encode(b"\x00" + bytes([len(key)]) + key).decode()


# ------------------------------------------------------------------------ encoding


def encode_name(name: str) -> bytes:
    out = b""
    for label in name.rstrip(".").split("."):
        raw = label.encode()
        assert 0 < len(raw) < 64, label
        out += bytes([len(raw)]) + raw
    return out + b"\0"


def header(id_: int, flags: int, qd: int, an: int, ns: int, ar: int) -> bytes:
    return struct.pack("!6H", id_, flags, qd, an, ns, ar)


def question(name: str, qtype: int = TYPE_PTR, qclass: int = CLASS_IN) -> bytes:
    return encode_name(name) + struct.pack("!2H", qtype, qclass)


def record(name: str, rtype: int, rclass: int, ttl: int, rdata: bytes) -> bytes:
    return encode_name(name) + struct.pack("!2HIH", rtype, rclass, ttl, len(rdata)) + rdata


def txt_rdata(strings: list[bytes]) -> bytes:
    return b"".join(bytes([len(s)]) + s for s in strings)


def rust_query() -> bytes:
    """rust-libp2p ``build_query``: random id, flags 0, one PTR question."""
    return header(secrets.randbelow(65536), 0, 1, 0, 0, 0) + question(SERVICE)


def rust_response(peer_name: str, addrs: list[str], ttl: int = 360, id_: int = 0) -> bytes:
    """rust-libp2p ``build_query_response``: PTR answer; one TXT record per address in the
    additionals, class IN with the cache-flush bit; ``addrs`` are full (``.../p2p/<id>``)."""
    instance = f"{peer_name}.{SERVICE}"
    txts = [
        record(
            instance, TYPE_TXT, CLASS_IN | CACHE_FLUSH, ttl, txt_rdata([f"dnsaddr={a}".encode()])
        )
        for a in addrs
    ]
    ptr = record(SERVICE, TYPE_PTR, CLASS_IN, ttl, encode_name(instance))
    return header(id_, 0x8400, 0, 1, 0, len(txts)) + ptr + b"".join(txts)


def js_response(peer_name: str, addrs: list[str], ttl: int = 120) -> bytes:
    """js-libp2p ``gotQuery`` answered through multicast-dns ``respond``: everything in the
    answers section, one TXT record per address."""
    instance = f"{peer_name}.{SERVICE}"
    answers = [record(SERVICE, TYPE_PTR, CLASS_IN, ttl, encode_name(instance))]
    answers += [
        record(instance, TYPE_TXT, CLASS_IN, ttl, txt_rdata([f"dnsaddr={a}".encode()]))
        for a in addrs
    ]
    return header(0, 0x8400, 0, len(answers), 0, 0) + b"".join(answers)


# ------------------------------------------------------------------------ decoding


@dataclasses.dataclass
class Record:
    name: str
    type: int
    cls: int
    ttl: int
    rdata: bytes
    target: str | None = None  # PTR
    strings: list[bytes] | None = None  # TXT


@dataclasses.dataclass
class Message:
    id: int
    flags: int
    questions: list[tuple[str, int, int]]
    answers: list[Record]
    authorities: list[Record]
    additionals: list[Record]

    def as_json(self) -> dict[str, object]:
        def rec(r: Record) -> dict[str, object]:
            out: dict[str, object] = {"name": r.name, "type": r.type, "class": r.cls, "ttl": r.ttl}
            if r.target is not None:
                out["target"] = r.target
            if r.strings is not None:
                out["strings"] = [s.decode("utf-8", "replace") for s in r.strings]
            return out

        return {
            "id": self.id,
            "flags": self.flags,
            "questions": [list(q) for q in self.questions],
            "answers": [rec(r) for r in self.answers],
            "authorities": [rec(r) for r in self.authorities],
            "additionals": [rec(r) for r in self.additionals],
        }


def _read_name(data: bytes, offset: int) -> tuple[str, int]:
    labels: list[str] = []
    end: int | None = None
    jumps = 0
    while True:
        length = data[offset]
        if length == 0:
            offset += 1
            break
        if length & 0xC0 == 0xC0:
            jumps += 1
            if jumps > 32:
                raise ValueError("compression loop")
            if end is None:
                end = offset + 2
            offset = ((length & 0x3F) << 8) | data[offset + 1]
            continue
        labels.append(data[offset + 1 : offset + 1 + length].decode())
        offset += 1 + length
    return ".".join(labels), end if end is not None else offset


def _read_record(data: bytes, offset: int) -> tuple[Record, int]:
    name, offset = _read_name(data, offset)
    rtype, rclass, ttl, length = struct.unpack_from("!2HIH", data, offset)
    offset += 10
    rdata = data[offset : offset + length]
    if len(rdata) != length:
        raise ValueError("truncated record")
    rec = Record(name, rtype, rclass, ttl, rdata)
    if rtype == TYPE_PTR:
        rec.target, _ = _read_name(data, offset)
    elif rtype == TYPE_TXT:
        rec.strings, pos = [], 0
        while pos < length:
            n = rdata[pos]
            rec.strings.append(rdata[pos + 1 : pos + 1 + n])
            pos += 1 + n
    return rec, offset + length


def decode(data: bytes) -> Message:
    id_, flags, qd, an, ns, ar = struct.unpack_from("!6H", data, 0)
    offset = 12
    questions = []
    for _ in range(qd):
        name, offset = _read_name(data, offset)
        qtype, qclass = struct.unpack_from("!2H", data, offset)
        offset += 4
        questions.append((name, qtype, qclass))
    sections: list[list[Record]] = [[], [], []]
    for section, count in zip(sections, (an, ns, ar), strict=True):
        for _ in range(count):
            rec, offset = _read_record(data, offset)
            section.append(rec)
    return Message(id_, flags, questions, *sections)
