"""SDK messages out to SSE subscribers (``GET /v1/messages``): each subscriber has a bounded
buffer; a slow one loses its oldest messages (counted), never the node's memory."""

from __future__ import annotations

import json
from collections import deque
from collections.abc import AsyncIterator
from typing import Any

import anyio

from fabstir_sidecar.gateway.stats import GatewayStats
from fabstir_sidecar.node.manager import DiscoveryManager

KEEPALIVE = b": keepalive\n\n"


class Subscriber:
    def __init__(self, size: int, stats: GatewayStats) -> None:
        self._queue: deque[bytes] = deque(maxlen=size)
        self._ready = anyio.Event()
        self._stats = stats

    def put(self, event: bytes) -> None:
        if len(self._queue) == self._queue.maxlen:
            self._stats.messages_dropped += 1  # deque drops the oldest on append
        self._queue.append(event)
        self._ready.set()

    async def events(self, keepalive: float) -> AsyncIterator[bytes]:
        """Buffered events as they come; a keepalive comment after ``keepalive`` s of none."""
        while True:
            if not self._queue:
                self._ready = anyio.Event()
                with anyio.move_on_after(keepalive) as waited:
                    await self._ready.wait()
                if waited.cancelled_caught:
                    yield KEEPALIVE
                    continue
            parts = list(self._queue)
            self._queue.clear()
            yield b"".join(parts)


class MessageHub:
    """Subscribes once to the node's messages and fans them out."""

    def __init__(self, node: DiscoveryManager, *, buffer: int, stats: GatewayStats) -> None:
        self._buffer = buffer
        self._stats = stats
        self._subscribers: set[Subscriber] = set()
        self.close = node.on_message(self.publish)

    def publish(self, sender: str, message: Any) -> None:
        if not self._subscribers:
            return
        data = json.dumps({"from": sender, "message": message}, ensure_ascii=False)
        event = f"event: message\ndata: {data}\n\n".encode()
        for subscriber in list(self._subscribers):
            subscriber.put(event)

    def subscribe(self) -> Subscriber:
        subscriber = Subscriber(self._buffer, self._stats)
        self._subscribers.add(subscriber)
        return subscriber

    def unsubscribe(self, subscriber: Subscriber) -> None:
        self._subscribers.discard(subscriber)

    @property
    def subscribers(self) -> int:
        return len(self._subscribers)
