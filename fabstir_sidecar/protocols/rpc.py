"""The request/response layer every framed protocol runs on (PROTOCOL.md section 2).

Frames are a 4-byte big-endian length and UTF-8 JSON (``wire/framing.py``). This module adds
the I/O policy, once for all protocols:

* caps: a header announcing more than ``max_size`` is refused before its body is read;
* deadlines: ``read_timeout`` for the request to arrive (a stalled peer loses its stream,
  not the node) and ``total_timeout`` covering read, handle and write;
* concurrency: per-protocol and per-peer caps are enforced by the handler server, which
  resets excess streams instead of queueing them (``RpcLimits`` carries the numbers);
* errors: a malformed request is answered ``error/bad_request``, an oversized one
  ``error/too_large``, a handler crash ``error/internal``, a deadline ``error/timeout``,
  each best-effort, then the stream is closed. On the client side, every failure is one of
  the typed errors of ``fabstir_sidecar.errors``;
* no half-close: a requester keeps its write side open until the terminal frame arrived.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import anyio

from ..errors import (
    FabstirTimeoutError,
    MalformedMessageError,
    MessageTooLargeError,
    RemoteError,
    StreamClosedError,
)
from ..p2pd.control import DaemonControl, StreamHandler
from ..p2pd.stream import DaemonStream
from ..wire.framing import HEADER_SIZE, encode_json_frame, parse_header
from ..wire.json_codec import MAX_MESSAGE_SIZE, decode_json_object
from ..wire.messages import (
    ERROR_BAD_REQUEST,
    ERROR_INTERNAL,
    ERROR_TIMEOUT,
    ERROR_TOO_LARGE,
    BadRequestError,
    ErrorMessage,
)

log = logging.getLogger(__name__)


BATCH_DELAY = 0.002
"""Seconds a streamed frame may wait for others to share its write (``Exchange.batched``)."""
BATCH_BYTES = 64 * 1024
"""Pending bytes that trigger a write at once (``Exchange.batched``)."""


@dataclass(frozen=True, slots=True)
class RpcLimits:
    """Per-protocol policy (py-libp2p's request_response config object, in spirit)."""

    max_size: int = MAX_MESSAGE_SIZE
    read_timeout: float = 30.0
    total_timeout: float = 30.0
    max_concurrent: int = 256
    max_per_peer: int = 32
    close_linger: float = 0.2
    """After the last frame, wait up to this long for the requester to close first."""


async def read_frame(stream: DaemonStream, *, max_size: int = MAX_MESSAGE_SIZE) -> dict[str, Any]:
    """One JSON-object frame. Over ``max_size``: MessageTooLargeError before the body."""
    length = parse_header(await stream.receive_exactly(HEADER_SIZE), max_size=max_size)
    return decode_json_object(await stream.receive_exactly(length), max_size=max_size)


def read_buffered_frame(
    stream: DaemonStream, *, max_size: int = MAX_MESSAGE_SIZE
) -> dict[str, Any] | None:
    """The next frame if it is already wholly buffered, else None (nothing consumed).

    Streamed tokens arrive many frames per socket read: taking them without an await (and
    without a deadline scope per frame) is what makes a token stream fast.
    """
    if stream.buffered < HEADER_SIZE:
        return None
    length = parse_header(stream.peek_buffered(HEADER_SIZE), max_size=max_size)
    if stream.buffered < HEADER_SIZE + length:
        return None
    stream.take_buffered(HEADER_SIZE)
    return decode_json_object(stream.take_buffered(length), max_size=max_size)


async def write_frame(
    stream: DaemonStream, message: Mapping[str, Any], *, max_size: int = MAX_MESSAGE_SIZE
) -> None:
    await stream.send(encode_json_frame(dict(message), max_size=max_size))


# ------------------------------------------------------------------------ server


class Exchange:
    """What a protocol handler sees: the authenticated peer, the request, a way to reply."""

    __slots__ = ("_max_size", "_stream", "job_id", "peer_id", "protocol", "request", "sent")

    def __init__(self, stream: DaemonStream, request: dict[str, Any], max_size: int) -> None:
        self._stream = stream
        self._max_size = max_size
        self.peer_id = stream.peer_id
        self.protocol = stream.protocol
        self.request = request
        self.job_id: str | None = None  # echoed in error frames once the handler knows it
        self.sent = 0

    async def send(self, message: Mapping[str, Any]) -> None:
        await write_frame(self._stream, message, max_size=self._max_size)
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
                await self._exchange._stream.send(data)
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


RequestHandler = Callable[[Exchange], Awaitable[None]]


async def _send_error(stream: DaemonStream, code: str, message: str, job_id: str | None) -> None:
    """Best effort: the peer may be gone; never raise from here."""
    frame = ErrorMessage(code=code, message=message, job_id=job_id).to_json()
    with anyio.move_on_after(1.0, shield=True):
        with contextlib.suppress(StreamClosedError, MessageTooLargeError):
            await write_frame(stream, frame)


async def _await_requester_close(stream: DaemonStream, linger: float) -> None:
    """Let the requester close first, so the last frame is never lost.

    If the responder closes its end at once, p2pd tears the libp2p stream down (close, then
    reset) while the answer may still sit unread in the requester's daemon, which then drops
    it (measured: about 1 job in 20,000 lost that way on loopback). The requester closes as
    soon as it has the terminal frame; waiting for that costs no latency. Bytes it sends
    meanwhile are discarded; a requester that never closes is cut off after ``linger``.
    """
    with anyio.move_on_after(linger), contextlib.suppress(StreamClosedError):
        while await stream.receive_some():
            pass


def serve_requests(handler: RequestHandler, limits: RpcLimits) -> StreamHandler:
    """Wrap a request handler into a stream handler that applies ``limits`` and maps errors."""

    async def on_stream(stream: DaemonStream) -> None:
        if await _serve_one(stream):
            await _await_requester_close(stream, limits.close_linger)

    async def _serve_one(stream: DaemonStream) -> bool:
        """Serve one request; True if it was answered in time (then the requester, which
        behaved, may close first), False if the peer stalled or sent garbage (cut it off)."""
        exchange: Exchange | None = None
        with anyio.move_on_after(limits.total_timeout) as total:
            try:
                with anyio.fail_after(limits.read_timeout):
                    request = await read_frame(stream, max_size=limits.max_size)
            except TimeoutError:
                log.warning(
                    "request not received in time, dropping stream",
                    extra={"peer": stream.peer_id, "protocol": stream.protocol},
                )
                await _send_error(stream, ERROR_TIMEOUT, "request not received in time", None)
                return False
            except MessageTooLargeError as exc:
                log.warning(
                    "refused oversized request",
                    extra={"peer": stream.peer_id, "protocol": stream.protocol, "error": str(exc)},
                )
                await _send_error(stream, ERROR_TOO_LARGE, str(exc), None)
                return False
            except MalformedMessageError as exc:
                log.warning(
                    "refused malformed request",
                    extra={"peer": stream.peer_id, "protocol": stream.protocol, "error": str(exc)},
                )
                await _send_error(stream, ERROR_BAD_REQUEST, str(exc), None)
                return False
            exchange = Exchange(stream, request, limits.max_size)
            try:
                await handler(exchange)
            except BadRequestError as exc:
                log.info(
                    "bad request",
                    extra={"peer": stream.peer_id, "protocol": stream.protocol, "error": str(exc)},
                )
                await _send_error(stream, ERROR_BAD_REQUEST, str(exc), exchange.job_id)
            except StreamClosedError:
                raise
            except Exception as exc:
                log.exception(
                    "request handler failed",
                    extra={"peer": stream.peer_id, "protocol": stream.protocol},
                )
                await _send_error(
                    stream, ERROR_INTERNAL, f"{type(exc).__name__}: {exc}", exchange.job_id
                )
        if total.cancelled_caught:
            log.warning(
                "request exceeded its deadline",
                extra={
                    "peer": stream.peer_id,
                    "protocol": stream.protocol,
                    "timeout_s": limits.total_timeout,
                },
            )
            await _send_error(
                stream,
                ERROR_TIMEOUT,
                f"not completed within {limits.total_timeout:.1f}s",
                exchange.job_id if exchange else None,
            )
            return False
        return True

    return on_stream


# ------------------------------------------------------------------------ client


class ClientExchange:
    """An open request: read response frames with the exchange's deadline applied."""

    def __init__(
        self, stream: DaemonStream, *, max_size: int, deadline: float, timeout: float
    ) -> None:
        self._stream = stream
        self._max_size = max_size
        self._deadline = deadline
        self._timeout = timeout

    @property
    def peer_id(self) -> str:
        return self._stream.peer_id

    async def receive(self) -> dict[str, Any]:
        frame = read_buffered_frame(self._stream, max_size=self._max_size)
        if frame is not None:
            return frame
        remaining = self._deadline - anyio.current_time()
        try:
            with anyio.fail_after(max(remaining, 0.0)):
                return await read_frame(self._stream, max_size=self._max_size)
        except TimeoutError:
            raise FabstirTimeoutError(
                f"{self._stream.protocol} to {self.peer_id}: no response within "
                f"{self._timeout:.1f}s"
            ) from None

    async def aclose(self) -> None:
        await self._stream.aclose()

    async def __aenter__(self) -> ClientExchange:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()


async def open_request(
    control: DaemonControl,
    peer_id: str,
    protocol: str,
    request: Mapping[str, Any],
    *,
    timeout: float,
    max_size: int = MAX_MESSAGE_SIZE,
) -> ClientExchange:
    """Open a stream, write the request frame (no half-close), return the exchange."""
    frame = encode_json_frame(dict(request), max_size=max_size)  # too large: raise, no dial
    deadline = anyio.current_time() + timeout
    try:
        with anyio.fail_after(timeout):
            stream = await control.open_stream(peer_id, [protocol], timeout=timeout)
    except TimeoutError:
        raise FabstirTimeoutError(
            f"opening {protocol} to {peer_id} took over {timeout:.1f}s"
        ) from None
    try:
        await stream.send(frame)
    except BaseException:
        await stream.aclose()
        raise
    return ClientExchange(stream, max_size=max_size, deadline=deadline, timeout=timeout)


def raise_if_error(frame: Mapping[str, Any], *, peer_id: str) -> None:
    """Turn an ``error`` frame into RemoteError (the peer's code and message)."""
    if frame.get("type") == "error":
        err = ErrorMessage.from_json(frame)
        raise RemoteError(err.code, err.message, peer_id=peer_id)


async def call(
    control: DaemonControl,
    peer_id: str,
    protocol: str,
    request: Mapping[str, Any],
    *,
    timeout: float,
    max_size: int = MAX_MESSAGE_SIZE,
) -> dict[str, Any]:
    """One request, one response frame (status, discovery, inference)."""
    exchange = await open_request(
        control, peer_id, protocol, request, timeout=timeout, max_size=max_size
    )
    async with exchange:
        frame = await exchange.receive()
    raise_if_error(frame, peer_id=peer_id)
    return frame
