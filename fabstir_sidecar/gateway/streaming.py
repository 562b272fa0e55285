"""Server-sent events of a streamed job, tokens forwarded as they arrive.

A producer task reads the host's tokens; the writer sends whatever has arrived in one write
(tokens that came while the previous write was in flight are coalesced, none is delayed);
a third task watches for the client going away, which cancels the job: the host's stream is
closed and its slot freed.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from .. import FabstirError, JobResult
from .chat import DONE, sse
from .errors import from_library
from .runner import OpenStream

log = logging.getLogger(__name__)

BUFFER = 4096  # tokens read ahead of a slow HTTP client (the host is paced beyond that)

_End = JobResult | FabstirError | None


class TokenStreamResponse(Response):
    """``encode(token, first)`` makes one event; ``finish(result)`` the closing events."""

    media_type = "text/event-stream"

    def __init__(
        self,
        opened: OpenStream,
        encode: Callable[[str, bool], bytes],
        finish: Callable[[JobResult], bytes],
        headers: dict[str, str],
    ) -> None:
        super().__init__(
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no", **headers}
        )
        self.raw_headers = [(k, v) for k, v in self.raw_headers if k != b"content-length"]
        self.opened = opened
        self.encode = encode
        self.finish = finish

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        opened = self.opened
        out, inbox = anyio.create_memory_object_stream[str | _End](BUFFER)

        async def produce() -> None:
            end: _End = None
            async with out:
                try:
                    async for token in opened.tokens:
                        await out.send(token)
                    end = opened.result()
                except FabstirError as exc:
                    end = exc
                await out.send(end)

        async def watch_disconnect() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass
            tg.cancel_scope.cancel()

        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(watch_disconnect)
                await send(
                    {"type": "http.response.start", "status": 200, "headers": self.raw_headers}
                )
                first = opened.first is not None
                if first:
                    assert opened.first is not None
                    await self._body(send, self.encode(opened.first, True))
                tg.start_soon(produce)
                async with inbox:
                    await self._write(send, inbox, first)
                tg.cancel_scope.cancel()
        finally:
            with anyio.CancelScope(shield=True), contextlib.suppress(Exception):
                await opened.tokens.aclose()  # closes the host's stream if still open

    async def _write(
        self, send: Send, inbox: MemoryObjectReceiveStream[str | _End], first_sent: bool
    ) -> None:
        first = not first_sent
        async for item in inbox:
            parts: list[bytes] = []
            end: _End | str = item
            while True:
                if isinstance(end, str):
                    parts.append(self.encode(end, first))
                    first = False
                else:
                    parts.append(self._closing(end))
                    await self._body(send, b"".join(parts), more=False)
                    return
                try:
                    end = inbox.receive_nowait()
                except (anyio.WouldBlock, anyio.EndOfStream):
                    break
            await self._body(send, b"".join(parts))

    def _closing(self, end: _End) -> bytes:
        if isinstance(end, JobResult):
            return self.finish(end) + DONE
        if end is None:
            err = from_library(FabstirError("the host's stream ended without a result"))
        else:
            err = from_library(end, peer_id=self.opened.peer_id)
            if err.code != "host_timeout":
                err.code, err.status = "host_failed", 502
        log.info("stream failed after its first token", extra={"error": err.message})
        return sse({"error": err.error_object()}) + DONE

    @staticmethod
    async def _body(send: Send, data: bytes, more: bool = True) -> None:
        await send({"type": "http.response.body", "body": data, "more_body": more})
