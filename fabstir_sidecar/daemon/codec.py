"""Bytes of the p2pd control protocol: delimited messages and multiaddrs.

The messages themselves are :mod:`~fabstir_sidecar.daemon.p2pd_pb2`, generated from the
schema of hivemind's p2pd fork (``p2pd.proto`` beside it), which has what p2pclient's
schema lacks: ``StreamHandlerRequest.balanced`` (required by the fork) and
``REMOVE_STREAM_HANDLER``. Pure except for the two readers at the end, which only read a
socket. Two defects of the libraries are fixed here, once:

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
from typing import Any, Final, Protocol, TypeVar

import anyio.abc
from google.protobuf.message import DecodeError
from multiaddr import Multiaddr

from fabstir_sidecar.core.errors import ControlError
from fabstir_sidecar.core.multiaddr import PeerAddrs
from fabstir_sidecar.core.peer_id import PeerId
from fabstir_sidecar.core.varint import decode_uvarint, encode_uvarint
from fabstir_sidecar.daemon import p2pd_pb2 as pb

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


def handler_addr_bytes(handler: Path | str) -> bytes:
    """A handler listener's address for p2pd: our unix socket's path, or a multiaddr."""
    return (
        unix_multiaddr_bytes(handler) if isinstance(handler, Path) else multiaddr_to_bytes(handler)
    )


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


class _Message(Protocol):
    def ParseFromString(self, serialized: bytes, /) -> Any: ...


M = TypeVar("M", bound=_Message)


def frame(message: bytes) -> bytes:
    """``message`` with its varint length prefix, as the control socket wants it."""
    return encode_uvarint(len(message)) + message


def request(**fields: Any) -> bytes:
    """A framed ``Request`` with ``fields`` (e.g. ``type=pb.Request.IDENTIFY``)."""
    return frame(pb.Request(**fields).SerializeToString())


def parse(message: M, raw: bytes) -> M:
    """``message`` filled from ``raw``; :class:`ControlError` if p2pd sent bad protobuf."""
    try:
        message.ParseFromString(raw)
    except DecodeError as exc:
        raise ControlError(f"malformed protobuf from p2pd: {exc}") from None
    return message


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


async def read_message(
    sock: anyio.abc.ByteStream, buffer: bytearray, message: M, *, limit: int = MAX_CONTROL_MESSAGE
) -> M:
    """:func:`read_delimited`, parsed into ``message``."""
    return parse(message, await read_delimited(sock, buffer, limit=limit))
