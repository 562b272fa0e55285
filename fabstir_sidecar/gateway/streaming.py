"""Server-sent events of a streamed job, tokens forwarded as they arrive.

A producer task reads the host's tokens and appends their events to a buffer; the writer
sends whatever the buffer holds in one write. Tokens that arrive while a write is in flight
are coalesced into the next one, and none waits for company: the writer wakes on the first.
(The buffer is handed over without a checkpoint per token, which a memory object stream
would add: that would wake the writer once per token, one write each.) A third task watches
for the client going away, which cancels the job: the host's stream is closed, its slot
freed. The buffer is bounded: beyond ``MAX_BUFFERED`` bytes the producer waits for the
writer, so a slow HTTP client slows the host's stream, never the gateway's memory.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable

import anyio
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from fabstir_sidecar.core.errors import FabstirError
from fabstir_sidecar.gateway.chat import DONE, sse
from fabstir_sidecar.gateway.errors import from_library
from fabstir_sidecar.gateway.runner import OpenStream
from fabstir_sidecar.wire.messages import JobResult

log = logging.getLogger(__name__)

MAX_BUFFERED = 256 * 1024


class _Buffer:
    def __init__(self) -> None:
        self.parts: list[bytes] = []
        self.size = 0
        self.done = False
        self.ready = anyio.Event()
        self.room = anyio.Event()

    def put(self, data: bytes) -> None:
        self.parts.append(data)
        self.size += len(data)
        self.ready.set()

    def take(self) -> bytes:
        self.ready = anyio.Event()
        data = b"".join(self.parts)
        self.parts.clear()
        self.size = 0
        self.room.set()
        return data


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
        buffer = _Buffer()

        async def produce() -> None:
            first = opened.first is None
            end: JobResult | FabstirError | None = None
            try:
                async for token in opened.tokens:
                    buffer.put(self.encode(token, first))
                    first = False
                    if buffer.size > MAX_BUFFERED:
                        buffer.room = anyio.Event()
                        await buffer.room.wait()
                end = opened.result()
            except FabstirError as exc:
                end = exc
            buffer.put(self._closing(end))
            buffer.done = True

        async def watch_disconnect() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass
            tg.cancel_scope.cancel()

        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(watch_disconnect)
                start = {"type": "http.response.start", "status": 200, "headers": self.raw_headers}
                await send(start)
                if opened.first is not None:
                    await self._body(send, self.encode(opened.first, True))
                tg.start_soon(produce)
                while True:
                    await buffer.ready.wait()
                    done = buffer.done
                    await self._body(send, buffer.take(), more=not done)
                    if done:
                        break
                tg.cancel_scope.cancel()
        finally:
            try:
                with anyio.CancelScope(shield=True), contextlib.suppress(Exception):
                    await opened.tokens.aclose()  # closes the host's stream if still open
            finally:
                opened.release()

    def _closing(self, end: JobResult | FabstirError | None) -> bytes:
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
