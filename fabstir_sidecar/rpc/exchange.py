"""The responder side of one request: the authenticated peer, the request, replies
(one by one, or coalesced into few writes for streamed tokens)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Mapping
from typing import Any

import anyio

from fabstir_sidecar.core.errors import StreamClosedError
from fabstir_sidecar.daemon.stream import DaemonStream
from fabstir_sidecar.wire.framing import encode_json_frame

BATCH_DELAY = 0.002
"""Seconds a streamed frame may wait for others to share its write (``Exchange.batched``)."""
BATCH_BYTES = 64 * 1024
"""Pending bytes that trigger a write at once (``Exchange.batched``)."""
WRITE_TIMEOUT = 10.0
"""Seconds one write may block (the requester stopped reading) before the stream is cut."""


class ReaderStalledError(StreamClosedError):
    """A write blocked past the write deadline: the requester stopped reading."""


async def _send(stream: DaemonStream, data: bytes, write_timeout: float) -> None:
    try:
        with anyio.fail_after(write_timeout):
            await stream.send(data)
    except TimeoutError:
        raise ReaderStalledError(
            f"{stream.protocol} to {stream.peer_id}: a write blocked for over "
            f"{write_timeout:.1f}s (the requester stopped reading)"
        ) from None


class Exchange:
    """What a protocol handler sees: the authenticated peer, the request, a way to reply."""

    __slots__ = (
        "_max_size",
        "_stream",
        "_write_timeout",
        "job_id",
        "peer_id",
        "protocol",
        "request",
        "sent",
    )

    def __init__(
        self,
        stream: DaemonStream,
        request: dict[str, Any],
        max_size: int,
        write_timeout: float = WRITE_TIMEOUT,
    ) -> None:
        self._stream = stream
        self._max_size = max_size
        self._write_timeout = write_timeout
        self.peer_id = stream.peer_id
        self.protocol = stream.protocol
        self.request = request
        self.job_id: str | None = None  # echoed in error frames once the handler knows it
        self.sent = 0

    async def send(self, message: Mapping[str, Any]) -> None:
        frame = encode_json_frame(dict(message), max_size=self._max_size)
        await _send(self._stream, frame, self._write_timeout)
        self.sent += 1

    @contextlib.asynccontextmanager
    async def batched(
        self, *, delay: float = BATCH_DELAY, max_pending: int = BATCH_BYTES
    ) -> AsyncIterator[FrameBatch]:
        """Send a burst of frames (streamed tokens) coalesced into few writes.

        A frame waits at most ``delay`` seconds, or until ``max_pending`` bytes are pending,
        before it is written with the frames queued behind it: one write (and one yamux
        frame in each daemon) per batch instead of per token. Everything is written, in
        order, before the block ends, also when it ends with an exception.
        """
        batch = FrameBatch(self, delay, max_pending)
        failed: BaseException | None = None
        async with anyio.create_task_group() as tg:
            tg.start_soon(batch.flush_after_delay)
            try:
                yield batch
            except Exception as exc:  # re-raised below, unwrapped, after a last flush
                failed = exc
            except BaseException:  # cancelled: the stream is going away
                tg.cancel_scope.cancel()
                raise
            batch.close()  # the flusher finishes its write and stops
        if failed is None:
            await batch.flush()
            return
        with contextlib.suppress(StreamClosedError):
            await batch.flush()
        raise failed


class FrameBatch:
    """Frames queued by ``send`` and written by ``flush``; see ``Exchange.batched``."""

    def __init__(self, exchange: Exchange, delay: float, max_pending: int) -> None:
        self._exchange = exchange
        self._delay = delay
        self._max_pending = max_pending
        self._pending = bytearray()
        self._lock = anyio.Lock()
        self._queued = anyio.Event()
        self._error: StreamClosedError | None = None
        self.closing = anyio.Event()

    async def send(self, message: Mapping[str, Any]) -> None:
        if self._error is not None:
            raise self._error
        self._pending += encode_json_frame(dict(message), max_size=self._exchange._max_size)
        self._exchange.sent += 1
        if len(self._pending) >= self._max_pending:
            await self.flush()
        else:
            self._queued.set()

    async def flush(self) -> None:
        if self._error is not None:
            raise self._error
        async with self._lock:
            if not self._pending:
                return
            data = bytes(self._pending)
            self._pending.clear()
            try:
                await _send(self._exchange._stream, data, self._exchange._write_timeout)
            except StreamClosedError as exc:
                self._error = exc
                raise

    async def flush_after_delay(self) -> None:
        """The flusher task: a queued frame is written at most ``delay`` s later."""
        while True:
            await self._queued.wait()
            if not self.closing.is_set():
                with anyio.move_on_after(self._delay):
                    await self.closing.wait()
            self._queued = anyio.Event()
            try:
                await self.flush()
            except StreamClosedError:
                return  # the sender sees the error on its next send
            if self.closing.is_set():
                return

    def close(self) -> None:
        """Stop the flusher after its current write (the caller flushes what is left)."""
        self.closing.set()
        self._queued.set()
