"""``<prefix>/message``: the TypeScript SDK's one-way messages (docs/protocol.md §2-4).

One JSON value per stream, unframed: the sender writes UTF-8 JSON and closes; the receiver
reads until EOF, at most ``max_size`` bytes, within ``timeout`` seconds. The sender is the
stream's authenticated remote peer — nothing in the body is trusted as "from".
"""

from __future__ import annotations

import contextlib
import inspect
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import anyio

from fabstir_sidecar.core.errors import (
    FabstirTimeoutError,
    MessageTooLargeError,
    ProtocolError,
    StreamClosedError,
)
from fabstir_sidecar.daemon.control import DaemonControl
from fabstir_sidecar.daemon.stream import DaemonStream
from fabstir_sidecar.wire.json_codec import decode_json_value, encode_json

log = logging.getLogger(__name__)

MessageHandler = Callable[[str, Any], Awaitable[None] | None]


def encode_message(message: Any, *, max_size: int) -> bytes:
    """The wire bytes of ``message``; MessageTooLargeError/MalformedMessageError locally."""
    data = encode_json(message, max_size=None)
    if len(data) > max_size:
        raise MessageTooLargeError(len(data), max_size)
    return data


async def send_message(
    control: DaemonControl,
    peer_id: str,
    message: Any,
    *,
    protocol: str,
    max_size: int,
    timeout: float,
) -> None:
    """Open a stream, write the JSON, close. Raises before dialing if it is too large."""
    data = encode_message(message, max_size=max_size)
    try:
        with anyio.fail_after(timeout):
            stream = await control.open_stream(peer_id, [protocol], timeout=timeout)
            async with stream:
                await stream.send(data)
                # Half-close, then wait until p2pd closes its end: by then it has read every
                # byte and closed the libp2p stream, so stopping the node right after this
                # returns (as `fabstir-sidecar send` does) no longer drops the message.
                await stream.send_eof()
                with contextlib.suppress(StreamClosedError):
                    while await stream.receive_some():
                        pass
    except TimeoutError:
        raise FabstirTimeoutError(
            f"sending a message to {peer_id} took over {timeout:.1f}s"
        ) from None


class MessageService:
    """Receives SDK messages and hands ``(sender_peer_id, message)`` to subscribers."""

    def __init__(self, *, max_size: int, timeout: float) -> None:
        self.max_size = max_size
        self.timeout = timeout
        self._handlers: list[MessageHandler] = []
        self.received = 0
        self.refused = 0

    def subscribe(self, handler: MessageHandler) -> Callable[[], None]:
        self._handlers.append(handler)

        def unsubscribe() -> None:
            if handler in self._handlers:
                self._handlers.remove(handler)

        return unsubscribe

    async def handle_stream(self, stream: DaemonStream) -> None:
        try:
            with anyio.fail_after(self.timeout):
                data = await stream.read_until_eof(self.max_size)
            message = decode_json_value(data, max_size=self.max_size)
        except TimeoutError:
            self.refused += 1
            log.warning(
                "message stream stalled, dropping it",
                extra={"peer": stream.peer_id, "timeout_s": self.timeout},
            )
            return
        except (ProtocolError, StreamClosedError) as exc:
            self.refused += 1
            log.warning("refused message", extra={"peer": stream.peer_id, "error": str(exc)})
            return
        finally:
            await stream.aclose()
        self.received += 1
        await self.dispatch(stream.peer_id, message)

    async def dispatch(self, sender: str, message: Any) -> None:
        if not self._handlers:
            log.debug("message received with no subscriber", extra={"peer": sender})
        for handler in list(self._handlers):
            try:
                result = handler(sender, message)
                if inspect.isawaitable(result):
                    await result
            except Exception:
                log.exception("message handler raised; node keeps serving", extra={"peer": sender})
