"""The SSE fan-out of SDK messages: every subscriber gets every message; a slow one loses
its oldest (counted); keepalive comments when idle."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import anyio
import pytest

from fabstir_sidecar.gateway.hub import KEEPALIVE, MessageHub
from fabstir_sidecar.gateway.stats import GatewayStats

pytestmark = pytest.mark.anyio


class StubNode:
    """Only what MessageHub needs of a DiscoveryManager: ``on_message``."""

    def __init__(self) -> None:
        self.handlers: list[Callable[[str, Any], None]] = []

    def on_message(self, handler: Callable[[str, Any], None]) -> Callable[[], None]:
        self.handlers.append(handler)
        return lambda: self.handlers.remove(handler)


def events(data: bytes) -> list[dict[str, Any]]:
    out = []
    for block in data.decode().split("\n\n"):
        if block:
            kind, payload = block.split("\n")
            assert kind == "event: message"
            out.append(json.loads(payload.removeprefix("data: ")))
    return out


async def test_every_subscriber_gets_every_message_and_slow_ones_lose_the_oldest() -> None:
    node, stats = StubNode(), GatewayStats()
    hub = MessageHub(node, buffer=3, stats=stats)  # type: ignore[arg-type]
    fast, slow = hub.subscribe(), hub.subscribe()
    fast_events = fast.events(keepalive=10)
    [publish] = node.handlers
    publish("peer-a", {"n": 0})
    assert events(await anext(fast_events)) == [{"from": "peer-a", "message": {"n": 0}}]
    for n in range(1, 6):
        publish("peer-b", n)
    assert [e["message"] for e in events(await anext(fast_events))] == [3, 4, 5]
    slow_events = slow.events(keepalive=10)
    assert [e["message"] for e in events(await anext(slow_events))] == [3, 4, 5]
    assert stats.messages_dropped == 2 + 3  # fast lost 1, 2; slow lost 0, 1, 2
    hub.unsubscribe(fast)
    assert hub.subscribers == 1
    hub.close()
    assert node.handlers == []


async def test_keepalive_comment_when_idle() -> None:
    node = StubNode()
    hub = MessageHub(node, buffer=4, stats=GatewayStats())  # type: ignore[arg-type]
    stream = hub.subscribe().events(keepalive=0.05)
    with anyio.fail_after(2):
        assert await anext(stream) == KEEPALIVE
