"""The SDK's message API on a node: subscribe, send, and the linger that keeps a last
message from being lost when the node stops right after sending it."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import anyio

from fabstir_sidecar.core.peer_id import PeerId
from fabstir_sidecar.core.settings import NodeConfig
from fabstir_sidecar.daemon.control import DaemonControl
from fabstir_sidecar.protocols.message import MessageHandler, MessageService, encode_message
from fabstir_sidecar.protocols.message import send_message as send_sdk_message

__all__ = ["SdkMessages"]


class SdkMessages:
    """``/fabstir-llm/1.0.0/message`` in and out for one node."""

    def __init__(self, config: NodeConfig) -> None:
        self._config = config
        self.service = MessageService(
            max_size=config.max_message_size, timeout=config.connection_timeout
        )
        self._last_sent: float | None = None  # anyio clock

    def subscribe(self, handler: MessageHandler) -> Callable[[], None]:
        return self.service.subscribe(handler)

    async def send(
        self,
        control: DaemonControl,
        peer: str,
        message: Any,
        dial: Callable[[str], Awaitable[str]],
    ) -> None:
        """Send ``message`` to a peer id, or to a full multiaddr dialed first with ``dial``
        (an oversized or unencodable message is refused before anyone is dialed)."""
        if peer.startswith("/"):
            encode_message(message, max_size=self._config.max_message_size)
            peer = await dial(peer)
        else:
            PeerId.parse(peer)
        await send_sdk_message(
            control,
            peer,
            message,
            protocol=self._config.message_protocol,
            max_size=self._config.max_message_size,
            timeout=self._config.connection_timeout,
        )
        self._last_sent = anyio.current_time()

    async def linger(self) -> None:
        """Wait until ``message_linger`` has passed since the last message sent (see
        ``NodeConfig.message_linger``). Cancellable: Ctrl-C does not wait."""
        if self._last_sent is None:
            return
        remaining = self._last_sent + self._config.message_linger - anyio.current_time()
        if remaining > 0:
            await anyio.sleep(remaining)

    @property
    def stats(self) -> dict[str, int]:
        return {"received": self.service.received, "refused": self.service.refused}
