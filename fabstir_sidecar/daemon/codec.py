"""Bytes of the p2pd control protocol: delimited messages, multiaddrs, request encoding.

Pure except for :func:`read_delimited`, which only reads a socket. Two defects of the
libraries are fixed here, once:

- multiaddr 0.2.0 encodes ``/unix/<path>`` without the path's leading slash, so the daemon
  would dial a relative path for our handler socket: :func:`unix_multiaddr_bytes` encodes
  it as go-multiaddr does.
- p2pclient writes varints one byte per ``send`` and reads them one byte per ``receive``:
  requests are framed here and sent in one write, responses parsed from a buffer.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Final

import anyio.abc
from multiaddr import Multiaddr
from p2pclient.pb import p2pd_pb2 as pb

from fabstir_sidecar.core.errors import ControlError
from fabstir_sidecar.core.multiaddr import PeerAddrs
from fabstir_sidecar.core.peer_id import PeerId
from fabstir_sidecar.core.varint import decode_uvarint, encode_uvarint

log = logging.getLogger(__name__)

MAX_CONTROL_MESSAGE: Final = 4 * 1024 * 1024  # p2pd's own persistentConnMaxMsgSize default
_P_UNIX: Final = 400  # the multicodec of /unix


def unix_multiaddr_bytes(path: Path | str) -> bytes:
    """Binary ``/unix/<absolute path>`` as go-multiaddr encodes it (leading slash kept)."""
    raw = str(path).encode()
    if not raw.startswith(b"/"):
        raise ValueError(f"unix socket path must be absolute: {path}")
    return encode_uvarint(_P_UNIX) + encode_uvarint(len(raw)) + raw


def multiaddr_to_bytes(addr: str) -> bytes:
    if addr.startswith("/unix/"):
        return unix_multiaddr_bytes(addr[len("/unix") :])
    return bytes(Multiaddr(addr).to_bytes())


def multiaddr_from_bytes(raw: bytes) -> str | None:
    try:
        return str(Multiaddr(raw))
    except Exception:  # an address kind multiaddr 0.2.0 does not know: skip it
        log.debug("skipping undecodable multiaddr from p2pd", extra={"raw": raw.hex()})
        return None


def addrs_from_bytes(raw: Sequence[bytes]) -> tuple[str, ...]:
    """The decodable addresses of ``raw``, in order."""
    return tuple(a for a in map(multiaddr_from_bytes, raw) if a)


def peer_addrs(raw: pb.PeerInfo) -> PeerAddrs:
    return PeerAddrs(PeerId.from_bytes(raw.id), addrs_from_bytes(raw.addrs))


def frame(message: bytes) -> bytes:
    """``message`` with its varint length prefix, as the control socket wants it."""
    return encode_uvarint(len(message)) + message


def _nested(field_number: int, payload: bytes) -> bytes:
    return encode_uvarint(field_number << 3 | 2) + encode_uvarint(len(payload)) + payload


def handler_request(
    request_type: int,
    field_number: int,
    addr: bytes,
    protocols: Sequence[str],
    *,
    balanced: bool | None,
) -> bytes:
    """Encode STREAM_HANDLER / REMOVE_STREAM_HANDLER requests of hivemind's p2pd fork.

    p2pclient's schema lacks what the fork added: ``StreamHandlerRequest.balanced`` (field
    3, *required* by the fork), the request type ``REMOVE_STREAM_HANDLER = 10`` and its
    ``Request.removeStreamHandler`` field (9, a message of ``addr = 1`` and ``proto = 2``,
    the shape of StreamHandlerRequest without ``balanced``). See the fork's pb/p2pd.proto
    (learning-at-home/go-libp2p-daemon).
    """
    inner = pb.StreamHandlerRequest(addr=addr, proto=list(protocols)).SerializeToString()
    if balanced is not None:
        inner += encode_uvarint(3 << 3 | 0) + (b"\x01" if balanced else b"\x00")
    return encode_uvarint(1 << 3 | 0) + encode_uvarint(request_type) + _nested(field_number, inner)


def split_delimited(buffer: bytearray, *, limit: int) -> bytes | None:
    """Take one whole varint-delimited message off the front of ``buffer``, if it holds one."""
    try:
        decoded = decode_uvarint(buffer)
    except ValueError:
        raise ControlError("malformed varint from p2pd control socket") from None
    if decoded is None:
        return None
    size, used = decoded
    if size > limit:
        raise ControlError(f"p2pd control message too large ({size} bytes)")
    if len(buffer) < used + size:
        return None
    message = bytes(buffer[used : used + size])
    del buffer[: used + size]
    return message


async def read_delimited(
    sock: anyio.abc.ByteStream, buffer: bytearray, *, limit: int = MAX_CONTROL_MESSAGE
) -> bytes:
    """One varint-length-prefixed protobuf message from ``sock``; ``buffer`` keeps the rest.

    Raises ``anyio.EndOfStream`` if the socket ends before a whole message arrived.
    """
    while (message := split_delimited(buffer, limit=limit)) is None:
        buffer += await sock.receive(65536)
    return message
