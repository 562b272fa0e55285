"""A libp2p stream as p2pd hands it to us: a unix socket, plus bytes already read.

The daemon pipes each libp2p stream through its own unix connection. Reads are buffered
(the control response that opened the stream may arrive together with the first stream
bytes), every read is bounded by a caller-given cap, and socket-level failures become
``StreamClosedError``. Timeouts are the caller's: wrap calls in ``anyio.fail_after``.

Closing: ``aclose()`` closes both directions. p2pd then closes the libp2p stream, so never
close a stream you still expect a reply on (see PROTOCOL.md section 2).
"""

from __future__ import annotations

import contextlib

import anyio
import anyio.abc

from ..errors import MessageTooLargeError, StreamClosedError

_SOCKET_ERRORS: tuple[type[BaseException], ...] = (
    anyio.BrokenResourceError,
    anyio.ClosedResourceError,
    ConnectionError,
    OSError,
)
RECEIVE_CHUNK = 256 * 1024


class DaemonStream:
    __slots__ = ("_buffer", "_closed", "_eof", "_sock", "peer_id", "protocol")

    def __init__(
        self,
        sock: anyio.abc.ByteStream,
        *,
        peer_id: str,
        protocol: str,
        buffered: bytes | bytearray = b"",
    ) -> None:
        self._sock = sock
        self._buffer = bytearray(buffered)
        self._eof = False
        self._closed = False
        self.peer_id = peer_id
        self.protocol = protocol

    def __repr__(self) -> str:
        return f"<DaemonStream peer={self.peer_id} protocol={self.protocol}>"

    async def _fill(self, max_bytes: int = RECEIVE_CHUNK) -> bool:
        """Read more into the buffer; False at EOF."""
        if self._eof:
            return False
        try:
            chunk = await self._sock.receive(max_bytes)
        except anyio.EndOfStream:
            self._eof = True
            return False
        except _SOCKET_ERRORS as exc:
            self._eof = True
            raise StreamClosedError(f"stream from {self.peer_id} broke: {exc}") from exc
        self._buffer += chunk
        return True

    async def receive_some(self, max_bytes: int = RECEIVE_CHUNK) -> bytes:
        """Up to ``max_bytes`` bytes; ``b""`` at EOF."""
        if not self._buffer and not await self._fill(max_bytes):
            return b""
        data = bytes(self._buffer[:max_bytes])
        del self._buffer[:max_bytes]
        return data

    async def receive_exactly(self, n: int) -> bytes:
        while len(self._buffer) < n:
            if not await self._fill(max(n - len(self._buffer), 4096)):
                raise StreamClosedError(
                    f"stream from {self.peer_id} ended after {len(self._buffer)} of {n} bytes"
                )
        data = bytes(self._buffer[:n])
        del self._buffer[:n]
        return data

    async def read_until_eof(self, limit: int) -> bytes:
        """Everything until the peer closes its write side; refuse more than ``limit`` bytes."""
        while await self._fill(RECEIVE_CHUNK):
            if len(self._buffer) > limit:
                raise MessageTooLargeError(None, limit)
        if len(self._buffer) > limit:
            raise MessageTooLargeError(len(self._buffer), limit)
        data = bytes(self._buffer)
        self._buffer.clear()
        return data

    async def send(self, data: bytes) -> None:
        try:
            await self._sock.send(data)
        except _SOCKET_ERRORS as exc:
            raise StreamClosedError(f"stream to {self.peer_id} broke: {exc}") from exc

    async def send_eof(self) -> None:
        """Close our write side only: p2pd sees EOF and closes the libp2p stream for writing."""
        try:
            await self._sock.send_eof()
        except _SOCKET_ERRORS as exc:
            raise StreamClosedError(f"stream to {self.peer_id} broke: {exc}") from exc

    async def aclose(self) -> None:
        """Close the stream (both directions). Idempotent, never raises, survives cancellation."""
        if self._closed:
            return
        self._closed = True
        with anyio.CancelScope(shield=True):
            with contextlib.suppress(*_SOCKET_ERRORS):
                await self._sock.aclose()

    async def __aenter__(self) -> DaemonStream:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()
