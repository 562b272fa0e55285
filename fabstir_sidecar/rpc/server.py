"""The request/response layer every framed protocol runs on (docs/protocol.md §2-4).

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
  the typed errors of ``fabstir_sidecar.core.errors``;
* no half-close: a requester keeps its write side open until the terminal frame arrived.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Awaitable, Callable

import anyio

from fabstir_sidecar.core.errors import (
    FrameTooLargeError,
    MalformedMessageError,
    MessageTooLargeError,
    StreamClosedError,
)
from fabstir_sidecar.daemon.handlers import StreamHandler
from fabstir_sidecar.daemon.stream import DaemonStream
from fabstir_sidecar.rpc.exchange import Exchange
from fabstir_sidecar.rpc.frames import read_frame, write_frame
from fabstir_sidecar.rpc.limits import RpcLimits
from fabstir_sidecar.wire.messages import (
    ERROR_BAD_REQUEST,
    ERROR_INTERNAL,
    ERROR_TIMEOUT,
    ERROR_TOO_LARGE,
    BadRequestError,
    ErrorMessage,
)

log = logging.getLogger(__name__)


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
            except (FrameTooLargeError, MalformedMessageError) as exc:
                code = ERROR_TOO_LARGE if isinstance(exc, FrameTooLargeError) else ERROR_BAD_REQUEST
                log.warning(
                    "refused request",
                    extra={
                        "peer": stream.peer_id,
                        "protocol": stream.protocol,
                        "code": code,
                        "error": str(exc),
                    },
                )
                await _send_error(stream, code, str(exc), None)
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
                log.error(  # an oversized answer is one line; a crash has its traceback
                    "request handler failed",
                    exc_info=not isinstance(exc, MessageTooLargeError),
                    extra={"peer": stream.peer_id, "protocol": stream.protocol, "error": str(exc)},
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
