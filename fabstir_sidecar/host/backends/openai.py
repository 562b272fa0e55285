"""A backend that forwards jobs to an OpenAI-compatible HTTP server.

Fronts anything serving ``POST {base_url}/chat/completions`` (llama.cpp server, vLLM,
Ollama, LM Studio, OpenAI itself): the prompt is sent as one user message, streamed jobs
use server-sent events (``data: {chunk}`` lines ending with ``data: [DONE]``).

The server is not trusted: every failure - unreachable, timeout, HTTP status >= 400,
a body that is not the expected JSON, a stream cut short - becomes one
:class:`~.base.BackendError` with a one-line message, and at most ``max_response_bytes``
of a response are ever read.

``timeout`` bounds the whole request for :meth:`OpenAIBackend.complete`; for
:meth:`OpenAIBackend.stream` it bounds connecting and each wait for the next bytes, since
a long generation may legitimately stream for longer (the host bounds a job's total time).
"""

from __future__ import annotations

import json
import math
from collections.abc import AsyncGenerator, Mapping
from contextlib import AbstractAsyncContextManager
from types import TracebackType
from typing import Any, Final, NoReturn, Self

import anyio
import httpx

from fabstir_sidecar.errors import ConfigError
from fabstir_sidecar.wire.messages import JobRequest

from .base import BackendError, Completion, StreamEnd, TokenStream

__all__ = ["DEFAULT_MAX_RESPONSE_BYTES", "OpenAIBackend"]

DEFAULT_MAX_RESPONSE_BYTES: Final = 8 * 1024 * 1024
_ERROR_BODY_LIMIT: Final = 64 * 1024
"""How much of an error response is read to quote the server's message."""
_SNIPPET_CHARS: Final = 200


def _snippet(text: str, limit: int = _SNIPPET_CHARS) -> str:
    """``text`` on one line (whitespace runs collapsed), at most ``limit`` characters."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {_snippet(text)}" if text else type(exc).__name__


def _error_message(payload: object) -> str | None:
    """The message of an OpenAI-style error body ``{"error": {"message": ...}}`` or
    ``{"error": "..."}``, if ``payload`` is one."""
    if not isinstance(payload, dict) or "error" not in payload:
        return None
    error = payload["error"]
    if isinstance(error, dict):
        message = error.get("message")
        if isinstance(message, str) and message:
            return message
        return json.dumps(error, ensure_ascii=False)
    return error if isinstance(error, str) else json.dumps(error, ensure_ascii=False)


def _count(value: object) -> int | None:
    """``value`` if it is a non-negative integer (and not a boolean)."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    return None


def _completion_tokens(payload: Mapping[str, Any]) -> int | None:
    usage = payload.get("usage")
    return _count(usage.get("completion_tokens")) if isinstance(usage, dict) else None


class _LineSplitter:
    """Split a byte stream into lines (``\\n`` or ``\\r\\n``), without the line ending.

    Lines are cut at the byte ``\\n``, which never occurs inside a multi-byte UTF-8
    character, so each line can be decoded on its own.
    """

    __slots__ = ("_buffer",)

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[bytes]:
        self._buffer += data
        lines: list[bytes] = []
        start = 0
        while (end := self._buffer.find(b"\n", start)) >= 0:
            lines.append(bytes(self._buffer[start:end]).removesuffix(b"\r"))
            start = end + 1
        del self._buffer[:start]
        return lines

    def flush(self) -> bytes | None:
        """The last line if the stream did not end with a line break."""
        if not self._buffer:
            return None
        line = bytes(self._buffer).removesuffix(b"\r")
        self._buffer.clear()
        return line


class _StreamState:
    """What a streamed response told us so far."""

    __slots__ = ("chunks", "done", "event", "finish_reason", "started", "usage_tokens")

    def __init__(self) -> None:
        self.started = False  # got a 2xx status: failures from here on are mid-stream
        self.chunks = 0  # chunks with non-empty content
        self.done = False  # saw data: [DONE]
        self.event = ""  # the SSE "event:" field of the current event
        self.finish_reason: str | None = None
        self.usage_tokens: int | None = None


class OpenAIBackend:
    """Serve jobs with an OpenAI-compatible server at ``base_url`` (e.g.
    ``http://127.0.0.1:8080/v1``).

    ``model_map`` translates the marketplace's model names to the server's (unmapped names
    are sent as they are). ``client``: an httpx client to use (and not close); by default
    the backend creates one and :meth:`aclose` closes it.
    """

    def __init__(
        self,
        base_url: str,
        *,
        api_key: str | None = None,
        timeout: float = 120.0,
        model_map: Mapping[str, str] | None = None,
        client: httpx.AsyncClient | None = None,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
    ) -> None:
        base = base_url.strip().rstrip("/")
        try:
            url = httpx.URL(base + "/chat/completions")
        except (httpx.InvalidURL, ValueError, TypeError) as exc:
            raise ConfigError("base_url", base_url, _describe(exc)) from None
        if url.scheme not in ("http", "https") or not url.host:
            raise ConfigError("base_url", base_url, "expected an http:// or https:// URL")
        if not (timeout > 0 and math.isfinite(timeout)):
            raise ConfigError("timeout", timeout, "must be a positive number of seconds")
        if max_response_bytes < 1:
            raise ConfigError("max_response_bytes", max_response_bytes, "must be positive")

        self._url = url
        # The URL as shown in messages: never a password embedded in base_url.
        shown = url.copy_with(username=url.username, password="***") if url.password else url
        self._shown_url = str(shown)
        self._api_key = api_key
        self._timeout = timeout
        self._model_map: dict[str, str] = dict(model_map or {})
        self._max_bytes = max_response_bytes
        self._owns_client = client is None
        self._closed = False
        self._client = client if client is not None else httpx.AsyncClient(timeout=timeout)

    @property
    def name(self) -> str:
        return "openai"

    @property
    def url(self) -> str:
        """The chat completions endpoint the backend posts to."""
        return self._shown_url

    # ------------------------------------------------------------------ requests

    def _body(self, request: JobRequest, *, stream: bool) -> bytes:
        body: dict[str, Any] = {
            "model": self._model_map.get(request.model, request.model),
            "messages": [m.to_json() for m in request.messages]
            if request.messages
            else [{"role": "user", "content": request.prompt}],
            "stream": stream,
        }
        if request.max_tokens is not None:
            body["max_tokens"] = request.max_tokens
        if request.temperature is not None:
            body["temperature"] = request.temperature
        try:
            return json.dumps(body, ensure_ascii=False, allow_nan=False).encode()
        except ValueError as exc:  # a NaN/infinite temperature
            raise BackendError(f"cannot encode the request for {self.url}: {exc}") from None

    def _headers(self, *, stream: bool) -> dict[str, str]:
        headers = {
            "Content-Type": "application/json",
            "Accept": "text/event-stream" if stream else "application/json",
        }
        if self._api_key is not None:
            headers["Authorization"] = f"Bearer {self._api_key}"
        return headers

    def _open(
        self, request: JobRequest, *, stream: bool
    ) -> AbstractAsyncContextManager[httpx.Response]:
        """The POST as an ``async with`` context (the response body is not read yet).

        ``stream`` is how this call reads the answer, whatever ``request.stream`` says.
        """
        if self._closed:
            raise BackendError(f"the backend for {self.url} is closed")
        return self._client.stream(
            "POST",
            self._url,
            content=self._body(request, stream=stream),
            headers=self._headers(stream=stream),
            timeout=self._timeout,
        )

    # ------------------------------------------------------------------ errors

    def _transport_error(self, exc: httpx.HTTPError) -> BackendError:
        if isinstance(exc, httpx.TimeoutException):
            what = "connecting" if isinstance(exc, httpx.ConnectTimeout) else "waiting for data"
            return BackendError(
                f"backend at {self.url} timed out after {self._timeout:g}s ({what})"
            )
        if isinstance(exc, httpx.ConnectError):
            return BackendError(f"cannot connect to backend at {self.url}: {_describe(exc)}")
        return BackendError(f"backend at {self.url} failed: {_describe(exc)}")

    def _bad_response(self, problem: str) -> BackendError:
        return BackendError(f"backend at {self.url} sent a bad response: {problem}")

    async def _raise_for_status(self, response: httpx.Response) -> None:
        if 200 <= response.status_code < 300:
            return
        raw = await self._read(response, limit=_ERROR_BODY_LIMIT, truncate=True)
        text = raw.decode("utf-8", errors="replace")
        try:
            message = _error_message(json.loads(text))
        except (ValueError, RecursionError):
            message = None
        detail = _snippet(message if message is not None else text) or "(empty body)"
        raise BackendError(f"backend at {self.url} answered HTTP {response.status_code}: {detail}")

    async def _read(self, response: httpx.Response, *, limit: int, truncate: bool) -> bytes:
        """The body, at most ``limit`` bytes: cut there if ``truncate``, else BackendError."""
        declared = response.headers.get("Content-Length", "")
        if not truncate and declared.isdigit() and int(declared) > limit:
            self._too_large(limit)
        body = bytearray()
        async for data in response.aiter_bytes():
            body += data
            if len(body) > limit:
                if truncate:
                    return bytes(body[:limit])
                self._too_large(limit)
        return bytes(body)

    def _too_large(self, limit: int) -> NoReturn:
        raise self._bad_response(f"response larger than {limit} bytes")

    def _decode_json(self, data: bytes, what: str) -> dict[str, Any]:
        try:
            payload = json.loads(data)
        except (ValueError, RecursionError) as exc:  # RecursionError: absurdly deep nesting
            text = data[:_SNIPPET_CHARS].decode("utf-8", errors="replace")
            raise self._bad_response(
                f"{what} is not valid JSON ({_describe(exc)}): {_snippet(text, 80)!r}"
            ) from None
        if not isinstance(payload, dict):
            raise self._bad_response(f"{what} is not a JSON object")
        message = _error_message(payload)
        if message is not None and "choices" not in payload:
            raise BackendError(f"backend at {self.url} reported an error: {_snippet(message)}")
        return payload

    # ------------------------------------------------------------------ complete

    async def complete(self, request: JobRequest) -> Completion:
        try:
            with anyio.fail_after(self._timeout):
                async with self._open(request, stream=False) as response:
                    await self._raise_for_status(response)
                    body = await self._read(response, limit=self._max_bytes, truncate=False)
        except httpx.HTTPError as exc:
            raise self._transport_error(exc) from exc
        except TimeoutError:
            raise BackendError(
                f"backend at {self.url} timed out after {self._timeout:g}s"
            ) from None
        return self._parse_completion(self._decode_json(body, "the response"))

    def _parse_completion(self, payload: Mapping[str, Any]) -> Completion:
        choices = payload.get("choices")
        if not isinstance(choices, list) or not choices:
            raise self._bad_response("no choices[0] in the response")
        choice = choices[0]
        message = choice.get("message") if isinstance(choice, dict) else None
        if not isinstance(message, dict) or "content" not in message:
            raise self._bad_response("no choices[0].message.content in the response")
        content = message["content"]
        if content is None:  # e.g. a refusal or a tool call: no text
            content = ""
        if not isinstance(content, str):
            raise self._bad_response("choices[0].message.content is not a string")
        finish_reason = choice.get("finish_reason")
        tokens = _completion_tokens(payload)
        return Completion(
            text=content,
            tokens_used=tokens if tokens is not None else len(content.split()),
            finish_reason=finish_reason
            if isinstance(finish_reason, str) and finish_reason
            else "stop",
        )

    # ------------------------------------------------------------------ stream

    def stream(self, request: JobRequest) -> TokenStream:
        return TokenStream(self._stream_items(request))

    async def _stream_items(self, request: JobRequest) -> AsyncGenerator[str | StreamEnd, None]:
        state = _StreamState()
        try:
            async with self._open(request, stream=True) as response:
                await self._raise_for_status(response)
                state.started = True
                content_type = response.headers.get("Content-Type", "")
                if content_type.startswith("application/json"):
                    # The server ignored "stream": true and answered in one piece.
                    body = await self._read(response, limit=self._max_bytes, truncate=False)
                    completion = self._parse_completion(self._decode_json(body, "the response"))
                    if completion.text:
                        yield completion.text
                    yield StreamEnd(completion.tokens_used, completion.finish_reason)
                    return
                splitter = _LineSplitter()
                received = 0
                async for data in response.aiter_bytes():
                    received += len(data)
                    if received > self._max_bytes:
                        self._too_large(self._max_bytes)
                    for line in splitter.feed(data):
                        piece = self._parse_line(line, state)
                        if piece:
                            yield piece
                        if state.done:
                            break
                    if state.done:
                        break
                else:
                    last = splitter.flush()
                    piece = self._parse_line(last, state) if last is not None else None
                    if piece:
                        yield piece
        except httpx.HTTPError as exc:
            # A server that drops the connection right after its final chunk (the one with a
            # finish_reason) has delivered everything; anything else is a failure.
            if isinstance(exc, httpx.TimeoutException) or not state.started:
                raise self._transport_error(exc) from exc
            if state.finish_reason is None:
                raise self._bad_response(
                    f"the stream broke off after {state.chunks} chunk(s) ({_describe(exc)})"
                ) from exc
        if not state.done and state.finish_reason is None:
            raise self._bad_response(
                f"the stream ended before data: [DONE] after {state.chunks} chunk(s)"
            )
        tokens = state.usage_tokens if state.usage_tokens is not None else state.chunks
        yield StreamEnd(tokens_used=tokens, finish_reason=state.finish_reason or "stop")

    def _parse_line(self, raw: bytes, state: _StreamState) -> str | None:
        """Apply one SSE line to ``state``; the content piece it carries, if any.

        Each ``data:`` line is one chunk (OpenAI-compatible servers never split a chunk
        over several lines); ``event:`` names the kind of the following data.
        """
        if not raw:
            state.event = ""  # a blank line ends an SSE event
            return None
        if raw.startswith(b":"):  # a comment / keep-alive
            return None
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise self._bad_response("a stream line is not valid UTF-8") from None
        field, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if field == "event":
            state.event = value.strip()
            return None
        if field != "data":
            return None  # id:, retry:, or an unknown field
        if value.strip() == "[DONE]":
            state.done = True
            return None
        if state.event == "error":
            chunk = _error_message(_loads_or_none(value))
            raise BackendError(
                f"backend at {self.url} reported an error: {_snippet(chunk or value)}"
            )
        payload = self._decode_json(value.encode(), "a stream chunk")
        return self._apply_chunk(payload, state)

    def _apply_chunk(self, payload: Mapping[str, Any], state: _StreamState) -> str | None:
        tokens = _completion_tokens(payload)
        if tokens is not None:
            state.usage_tokens = tokens
        choices = payload.get("choices")
        if choices is None or choices == []:  # e.g. the final usage-only chunk
            return None
        if not isinstance(choices, list) or not isinstance(choices[0], dict):
            raise self._bad_response("a stream chunk has no choices[0] object")
        choice = choices[0]
        finish_reason = choice.get("finish_reason")
        if isinstance(finish_reason, str) and finish_reason:
            state.finish_reason = finish_reason
        delta = choice.get("delta")
        if delta is None:
            return None
        if not isinstance(delta, dict):
            raise self._bad_response("choices[0].delta of a stream chunk is not an object")
        content = delta.get("content")
        if content is None or content == "":  # a role-only or final delta
            return None
        if not isinstance(content, str):
            raise self._bad_response("choices[0].delta.content of a stream chunk is not a string")
        state.chunks += 1
        return content

    # ------------------------------------------------------------------ lifecycle

    async def aclose(self) -> None:
        """Close the HTTP client if the backend created it (idempotent)."""
        self._closed = True
        if self._owns_client:
            await self._client.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        return f"OpenAIBackend({self.url!r}, timeout={self._timeout!r})"


def _loads_or_none(text: str) -> object:
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        return None
