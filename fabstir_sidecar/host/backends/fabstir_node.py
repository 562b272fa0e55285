"""A backend that forwards jobs to a fabstir-llm-node's HTTP API (``POST /v1/inference``).

So a sidecar can front a Rust Fabstir host node on the P2P network. The request and answer
are those of shared/HTTP_API.md section 3 (which mirrors the node's API)::

    {"model", "prompt", "max_tokens" (required by the node), "temperature", "stream",
     "request_id"}  ->  {"model", "content", "tokens_used", "finish_reason", "request_id"}

Streamed: ``data: {"content": S}`` per token, then ``data: {"content": "",
"finish_reason": S, "tokens_used": I, ...}``, then ``data: [DONE]``. The node is not
trusted: every failure (unreachable, timeout, HTTP >= 400, a body that is not the expected
JSON, a stream cut short, more than ``max_response_bytes``) is one BackendError.
"""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator
from typing import Any, Final

import anyio
import httpx

from fabstir_sidecar.backend import BackendError, Completion, StreamEnd, TokenStream
from fabstir_sidecar.core.errors import ConfigError
from fabstir_sidecar.host.backends.http_backend import HttpBackend
from fabstir_sidecar.host.backends.http_response import (
    DEFAULT_MAX_RESPONSE_BYTES,
    snippet,
)
from fabstir_sidecar.wire.messages import JobRequest

__all__ = ["DEFAULT_MAX_TOKENS", "FabstirNodeBackend"]

DEFAULT_MAX_TOKENS: Final = 256  # the node requires max_tokens; a job may leave it out


def _count(value: object) -> int | None:
    ok = isinstance(value, int) and not isinstance(value, bool) and value >= 0
    return value if ok else None  # type: ignore[return-value]


class FabstirNodeBackend(HttpBackend):
    """Serve jobs with the fabstir-llm-node at ``base_url`` (e.g. ``http://127.0.0.1:8080``).

    ``timeout`` bounds a whole non-streamed request, and connecting plus each wait for the
    next bytes of a streamed one.
    """

    def __init__(
        self,
        base_url: str,
        *,
        timeout: float = 120.0,
        default_max_tokens: int = DEFAULT_MAX_TOKENS,
        client: httpx.AsyncClient | None = None,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
    ) -> None:
        super().__init__(base_url, "/v1/inference", timeout, client, max_response_bytes)
        if default_max_tokens < 1:
            raise ConfigError("default_max_tokens", default_max_tokens, "must be >= 1")
        self._default_max_tokens = default_max_tokens

    @property
    def name(self) -> str:
        return "fabstir-node"

    @property
    def url(self) -> str:
        return str(self._url)

    def _body(self, request: JobRequest, stream: bool) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": request.model,
            "prompt": request.prompt,
            "max_tokens": request.max_tokens
            if request.max_tokens is not None
            else self._default_max_tokens,
            "stream": stream,
            "request_id": request.job_id,
        }
        if request.temperature is not None:
            body["temperature"] = request.temperature
        return body

    def _fail(self, problem: str) -> BackendError:
        return BackendError(f"fabstir node at {self.url}: {problem}")

    def _transport(self, exc: httpx.HTTPError) -> BackendError:
        if isinstance(exc, httpx.TimeoutException):
            return self._fail(f"timed out after {self._timeout:g}s")
        return self._fail(f"{type(exc).__name__}: {snippet(str(exc))}")

    async def _check(self, response: httpx.Response) -> None:
        if response.status_code < 400:
            return
        raw = b""
        async for data in response.aiter_bytes():
            raw += data
            if len(raw) > 64 * 1024:
                break
        text = raw.decode("utf-8", errors="replace")
        try:
            payload = json.loads(text)
            error = payload.get("error") if isinstance(payload, dict) else None
            if isinstance(error, dict):
                error = error.get("message")
            text = error if isinstance(error, str) and error else text
        except ValueError:
            pass
        raise self._fail(f"HTTP {response.status_code}: {snippet(text) or '(empty body)'}")

    def _json(self, data: bytes | str, what: str) -> dict[str, Any]:
        try:
            payload = json.loads(data)
        except (ValueError, RecursionError):
            raise self._fail(f"{what} is not valid JSON") from None
        if not isinstance(payload, dict):
            raise self._fail(f"{what} is not a JSON object")
        return payload

    async def complete(self, request: JobRequest) -> Completion:
        try:
            with anyio.fail_after(self._timeout):
                async with self._client.stream(
                    "POST", self._url, json=self._body(request, False), timeout=self._timeout
                ) as response:
                    await self._check(response)
                    body = bytearray()
                    async for data in response.aiter_bytes():
                        body += data
                        if len(body) > self._max_bytes:
                            raise self._fail(f"response larger than {self._max_bytes} bytes")
        except httpx.HTTPError as exc:
            raise self._transport(exc) from exc
        except TimeoutError:
            raise self._fail(f"timed out after {self._timeout:g}s") from None
        payload = self._json(bytes(body), "the response")
        content = payload.get("content")
        if not isinstance(content, str):
            raise self._fail("the response has no string 'content'")
        tokens = _count(payload.get("tokens_used"))
        finish = payload.get("finish_reason")
        return Completion(
            text=content,
            tokens_used=tokens if tokens is not None else len(content.split()),
            finish_reason=finish if isinstance(finish, str) and finish else "stop",
        )

    def stream(self, request: JobRequest) -> TokenStream:
        return TokenStream(self._events(request))

    async def _events(self, request: JobRequest) -> AsyncGenerator[str | StreamEnd, None]:
        end: StreamEnd | None = None
        pieces = 0
        received = 0
        try:
            async with self._client.stream(
                "POST",
                self._url,
                json=self._body(request, True),
                headers={"Accept": "text/event-stream"},
                timeout=self._timeout,
            ) as response:
                await self._check(response)
                async for line in response.aiter_lines():
                    received += len(line) + 1
                    if received > self._max_bytes:
                        raise self._fail(f"response larger than {self._max_bytes} bytes")
                    if not line.startswith("data:"):
                        continue  # blank lines, comments, event:/id: fields
                    value = line[5:].strip()
                    if value == "[DONE]":
                        break
                    event = self._json(value, "a stream event")
                    if "error" in event:
                        raise self._fail(f"reported an error: {snippet(str(event['error']))}")
                    content = event.get("content")
                    if content is not None and not isinstance(content, str):
                        raise self._fail("a stream event's 'content' is not a string")
                    if content:
                        pieces += 1
                        yield content
                    finish = event.get("finish_reason")
                    if isinstance(finish, str) and finish:
                        tokens = _count(event.get("tokens_used"))
                        end = StreamEnd(tokens if tokens is not None else pieces, finish)
        except httpx.HTTPError as exc:
            if end is None:
                raise self._transport(exc) from exc
        if end is None:
            raise self._fail(f"the stream ended without a finish_reason after {pieces} token(s)")
        yield end

    def __repr__(self) -> str:
        return f"FabstirNodeBackend({self.url!r})"
