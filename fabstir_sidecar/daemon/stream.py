"""A libp2p stream as p2pd hands it to us: a unix socket, plus bytes already read.

The daemon pipes each libp2p stream through its own unix connection. Reads are buffered
(the control response that opened the stream may arrive together with the first stream
bytes), every read is bounded by a caller-given cap, and socket-level failures become
``StreamClosedError``. Timeouts are the caller's: wrap calls in ``anyio.fail_after``.

Closing: ``aclose()`` closes both directions. p2pd then closes the libp2p stream, so never
close a stream you still expect a reply on (see docs/protocol.md §2-4).
"""

from __future__ import annotations

import contextlib
from typing import NoReturn

import anyio
import anyio.abc

from fabstir_sidecar.core.errors import FrameTooLargeError, StreamClosedError

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

    @property
    def buffered(self) -> int:
        """Bytes already received and not yet consumed (readable without waiting)."""
        return len(self._buffer)

    def peek_buffered(self, n: int) -> bytes:
        """Up to ``n`` buffered bytes, left in the buffer."""
        return bytes(self._buffer[:n])

    def take_buffered(self, n: int) -> bytes:
        """Exactly ``n`` buffered bytes; the caller checked ``buffered >= n``."""
        if len(self._buffer) < n:
            raise ValueError(f"only {len(self._buffer)} of {n} bytes are buffered")
        data = bytes(self._buffer[:n])
        del self._buffer[:n]
        return data

    async def receive_some(self, max_bytes: int = RECEIVE_CHUNK) -> bytes:
        """Up to ``max_bytes`` bytes; ``b""`` at EOF."""
        if not self._buffer and not await self._fill(max_bytes):
            return b""
        data = bytes(self._buffer[:max_bytes])
        del self._buffer[:max_bytes]
        return data

    async def receive_exactly(self, n: int) -> bytes:
        buffer = self._buffer
        if len(buffer) >= n:
            data = bytes(buffer[:n])
            del buffer[:n]
            return data
        if n - len(buffer) < RECEIVE_CHUNK:
            while len(buffer) < n:
                if not await self._fill():
                    self._short_read(n)
            data = bytes(buffer[:n])
            del buffer[:n]
            return data
        # A large body (up to a 1 MiB frame): keep the socket's chunks and join them once,
        # instead of growing the buffer chunk by chunk and copying the result out again.
        parts: list[bytes] = [bytes(buffer)] if buffer else []
        have = len(buffer)
        buffer.clear()
        while have < n:
            if self._eof:
                self._buffer[:] = b"".join(parts)
                self._short_read(n)
            try:
                chunk = await self._sock.receive(max(n - have, RECEIVE_CHUNK))
            except anyio.EndOfStream:
                self._eof = True
                continue
            except _SOCKET_ERRORS as exc:
                self._eof = True
                raise StreamClosedError(f"stream from {self.peer_id} broke: {exc}") from exc
            need = n - have
            if len(chunk) > need:
                buffer += memoryview(chunk)[need:]
                chunk = chunk[:need]
            parts.append(chunk)
            have += len(chunk)
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def _short_read(self, n: int) -> NoReturn:
        raise StreamClosedError(
            f"stream from {self.peer_id} ended after {len(self._buffer)} of {n} bytes"
        )

    async def read_until_eof(self, limit: int) -> bytes:
        """Everything until the peer closes its write side; refuse more than ``limit`` bytes."""
        while await self._fill(RECEIVE_CHUNK):
            if len(self._buffer) > limit:
                raise FrameTooLargeError(None, limit)
        if len(self._buffer) > limit:
            raise FrameTooLargeError(len(self._buffer), limit)
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
