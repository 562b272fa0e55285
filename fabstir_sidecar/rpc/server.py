"""The request/response layer every framed protocol runs on (docs/protocol.md §2-4).

Frames are a 4-byte big-endian length and UTF-8 JSON (``wire/framing.py``). This module adds
the I/O policy, once for all protocols:

* caps: a header announcing more than ``max_size`` is refused before its body is read;
* deadlines: ``read_timeout`` for the request to arrive (a stalled peer loses its stream,
  not the node) and ``total_timeout`` covering read, handle and write;
* admission (``RpcLimits``): hard caps per protocol and per peer are enforced by the handler
  server, which resets streams over them unread (flood defence); here, streams that have not
  sent their request yet have a short deadline and a capped, fairly shared pool of their own,
  and requests over ``soft_concurrent`` are read and answered ``error`` code ``busy`` with
  ``retry_after_ms``; a requester that stops reading loses its stream at the write deadline;
  every outcome is counted in ``limits.counters`` and logged as a summary per interval;
* errors: a malformed request is answered ``error/bad_request``, an oversized one
  ``error/too_large``, a handler crash ``error/internal``, a deadline ``error/timeout``,
  each best-effort, then the stream is closed. On the client side, every failure is one of
  the typed errors of ``fabstir_sidecar.core.errors``;
* no half-close: a requester keeps its write side open until the terminal frame arrived.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import anyio

from fabstir_sidecar.core.admission import AdmissionCounters, FairShare, LogSummary
from fabstir_sidecar.core.errors import (
    FrameTooLargeError,
    MalformedMessageError,
    MessageTooLargeError,
    StreamClosedError,
)
from fabstir_sidecar.daemon.handlers import StreamHandler
from fabstir_sidecar.daemon.stream import DaemonStream
from fabstir_sidecar.rpc.exchange import Exchange, ReaderStalledError
from fabstir_sidecar.rpc.frames import read_frame, write_frame
from fabstir_sidecar.rpc.limits import RpcLimits
from fabstir_sidecar.wire.messages import (
    ERROR_BAD_REQUEST,
    ERROR_BUSY,
    ERROR_INTERNAL,
    ERROR_TIMEOUT,
    ERROR_TOO_LARGE,
    BadRequestError,
    ErrorMessage,
)

log = logging.getLogger(__name__)


RequestHandler = Callable[[Exchange], Awaitable[None]]


_timeouts = LogSummary(log, "requests cut at a deadline")
_refused = LogSummary(log, "requests refused", level=logging.INFO)
_busy = LogSummary(log, "requests answered busy", level=logging.INFO)
_pending_resets = LogSummary(log, "streams reset unread (too many waiting for a request)")


async def _send_error(
    stream: DaemonStream,
    code: str,
    message: str,
    job_id: str | None,
    retry_after_ms: int | None = None,
) -> None:
    """Best effort: the peer may be gone; never raise from here."""
    frame = ErrorMessage(
        code=code, message=message, job_id=job_id, retry_after_ms=retry_after_ms
    ).to_json()
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


EVICT_AFTER = 0.25
"""Seconds a stream must have waited for its request before it may be cut to make room."""


class _Waiting:
    """Streams that have not sent their full request yet: a fairly shared pool of its own.

    When the pool is full, the stream that has waited longest (at least ``EVICT_AFTER``
    seconds: an honest request arrives within milliseconds) is cut to make room, so streams
    that send nothing cannot keep newcomers out, from however many identities.
    """

    def __init__(self, limits: RpcLimits) -> None:
        self.shares = FairShare(
            limits.pending_cap, limits.pending_per_peer, min_share=limits.min_share
        )
        self._scopes: dict[int, tuple[float, anyio.CancelScope]] = {}  # oldest first

    def enter(self, peer: str, scope: anyio.CancelScope) -> str | None:
        """Join the pool (None), or say why not."""
        why = self.shares.refusal(peer)
        if why == "full" and self._evict_oldest():
            why = None
        if why is None:
            self.shares.take(peer)
            self._scopes[id(scope)] = (anyio.current_time(), scope)
        return why

    def leave(self, peer: str, scope: anyio.CancelScope) -> None:
        if self._scopes.pop(id(scope), None) is not None:
            self.shares.release(peer)

    def _evict_oldest(self) -> bool:
        now = anyio.current_time()
        for since, scope in self._scopes.values():
            if now - since < EVICT_AFTER:
                return False
            if not scope.cancel_called:  # (an evicted stream may not have left yet)
                scope.cancel()
                return True
        return False


def serve_requests(handler: RequestHandler, limits: RpcLimits) -> StreamHandler:
    """Wrap a request handler into a stream handler that applies ``limits`` and maps errors."""
    waiting = _Waiting(limits)
    counters = limits.counters if limits.counters is not None else AdmissionCounters()
    inflight = 0

    async def on_stream(stream: DaemonStream) -> None:
        peer = str(stream.peer_id)
        protocol = stream.protocol
        scope = anyio.CancelScope()
        why = waiting.enter(peer, scope)
        if why is not None:
            counters.reset[protocol] += 1
            _pending_resets.count(f"{protocol} {why}", waiting=waiting.shares.total)
            return  # the handler server closes the stream unread
        request: dict[str, Any] | None = None
        try:
            with scope:
                request = await _read_request(stream)
        finally:
            waiting.leave(peer, scope)
        if scope.cancelled_caught:
            counters.timeout[protocol] += 1
            _timeouts.count(f"{protocol} evicted while waiting for its request")
            await _send_error(stream, ERROR_TIMEOUT, "request not received in time", None)
        if request is not None and await _serve_one(stream, request):
            await _await_requester_close(stream, limits.close_linger)

    async def _read_request(stream: DaemonStream) -> dict[str, Any] | None:
        """The request frame, or None after answering why there is none."""
        protocol = stream.protocol
        try:
            with anyio.fail_after(limits.first_read_timeout):
                return await read_frame(stream, max_size=limits.max_size)
        except TimeoutError:
            counters.timeout[protocol] += 1
            _timeouts.count(f"{protocol} request not received")
            await _send_error(stream, ERROR_TIMEOUT, "request not received in time", None)
        except (FrameTooLargeError, MalformedMessageError) as exc:
            code = ERROR_TOO_LARGE if isinstance(exc, FrameTooLargeError) else ERROR_BAD_REQUEST
            _refused.count(f"{protocol} {code}", peer=stream.peer_id, error=str(exc))
            await _send_error(stream, code, str(exc), None)
        except StreamClosedError:
            counters.closed[protocol] += 1
            _refused.count(f"{protocol} closed before its request")
        return None

    async def _serve_one(stream: DaemonStream, request: dict[str, Any]) -> bool:
        """Serve one request; True if it was answered in time (then the requester, which
        behaved, may close first), False if the peer stalled or sent garbage (cut it off)."""
        nonlocal inflight
        protocol = stream.protocol
        if limits.soft_concurrent is not None and inflight >= limits.soft_concurrent:
            counters.busy[protocol] += 1
            _busy.count(protocol, inflight=inflight)
            await _send_error(
                stream, ERROR_BUSY, "over capacity, try again later", None, limits.busy_retry_ms
            )
            return True
        counters.accepted[protocol] += 1
        exchange = Exchange(stream, request, limits.max_size, limits.write_timeout)
        inflight += 1
        try:
            with anyio.move_on_after(limits.total_timeout) as total:
                try:
                    await handler(exchange)
                except BadRequestError as exc:
                    _refused.count(f"{protocol} bad_request", peer=stream.peer_id, error=str(exc))
                    await _send_error(stream, ERROR_BAD_REQUEST, str(exc), exchange.job_id)
                except ReaderStalledError:
                    counters.timeout[protocol] += 1
                    _timeouts.count(f"{protocol} reader stalled")
                    return False
                except StreamClosedError:
                    raise
                except Exception as exc:
                    log.error(  # an oversized answer is one line; a crash has its traceback
                        "request handler failed",
                        exc_info=not isinstance(exc, MessageTooLargeError),
                        extra={"peer": stream.peer_id, "protocol": protocol, "error": str(exc)},
                    )
                    await _send_error(
                        stream, ERROR_INTERNAL, f"{type(exc).__name__}: {exc}", exchange.job_id
                    )
        finally:
            inflight -= 1
        if total.cancelled_caught:
            counters.timeout[protocol] += 1
            _timeouts.count(f"{protocol} over total deadline", timeout_s=limits.total_timeout)
            await _send_error(
                stream,
                ERROR_TIMEOUT,
                f"not completed within {limits.total_timeout:.1f}s",
                exchange.job_id,
            )
            return False
        return True

    return on_stream
