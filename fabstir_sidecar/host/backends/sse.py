"""The server-sent events of an HTTP response (parsed by httpx-sse), its body size capped.

The body is counted as it arrives, so a server that never ends a line still cannot make
the reader buffer more than ``max_bytes``. A last event the server did not end with a blank
line is still delivered (the stream's end ends it), as OpenAI-compatible servers expect.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator, Callable
from contextlib import aclosing
from typing import NoReturn

import httpx
from httpx_sse import EventSource, ServerSentEvent

__all__ = ["ServerSentEvent", "sse_events"]


class _CappedBody(httpx.AsyncByteStream):
    """The decoded body of ``response``, failing through ``too_large`` past ``max_bytes``."""

    def __init__(
        self, response: httpx.Response, max_bytes: int, too_large: Callable[[int], NoReturn]
    ) -> None:
        self._response = response
        self._max_bytes = max_bytes
        self._too_large = too_large

    async def __aiter__(self) -> AsyncIterator[bytes]:
        received = 0
        async for data in self._response.aiter_bytes():
            received += len(data)
            if received > self._max_bytes:
                self._too_large(self._max_bytes)
            yield data
        yield b"\n\n"  # the end of the body ends a last, unterminated event


async def sse_events(
    response: httpx.Response, *, max_bytes: int, too_large: Callable[[int], NoReturn]
) -> AsyncGenerator[ServerSentEvent, None]:
    """The events of ``response``, whatever its Content-Type says (UTF-8 text)."""
    body = httpx.Response(
        response.status_code,
        headers={"Content-Type": "text/event-stream; charset=utf-8"},
        stream=_CappedBody(response, max_bytes, too_large),
    )
    async with aclosing(EventSource(body).aiter_sse()) as events:
        async for event in events:
            yield event
