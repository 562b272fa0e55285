"""A backend that forwards jobs to an OpenAI-compatible HTTP server.

Fronts anything serving ``POST {base_url}/chat/completions`` (llama.cpp server, vLLM,
Ollama, LM Studio, OpenAI itself): a job's chat ``messages`` are sent as they are (else its
prompt as one user message); streamed jobs use server-sent events (``data: {chunk}``
events ending with ``data: [DONE]``). What the requests and answers mean is in
:mod:`.openai_chat`, SSE parsing in :mod:`.sse`, bounded reads and errors in
:mod:`.http_response`.

The server is not trusted: every failure - unreachable, timeout, HTTP status >= 400,
a body that is not the expected JSON, a stream cut short - becomes one
:class:`~fabstir_sidecar.backend.BackendError` with a one-line message, and at most
``max_response_bytes`` of a response are ever read.

``timeout`` bounds the whole request for :meth:`OpenAIBackend.complete`; for
:meth:`OpenAIBackend.stream` it bounds connecting and each wait for the next bytes, since
a long generation may legitimately stream for longer (the host bounds a job's total time).
"""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator, Mapping
from contextlib import AbstractAsyncContextManager, aclosing
from typing import Any

import anyio
import httpx

from fabstir_sidecar.backend import BackendError, Completion, StreamEnd, TokenStream
from fabstir_sidecar.host.backends.http_backend import HttpBackend
from fabstir_sidecar.host.backends.http_response import (
    DEFAULT_MAX_RESPONSE_BYTES,
    Endpoint,
    describe,
    loads_or_none,
)
from fabstir_sidecar.host.backends.openai_chat import (
    BadResponse,
    StreamState,
    apply_chunk,
    error_message,
    parse_completion,
    request_body,
)
from fabstir_sidecar.host.backends.sse import ServerSentEvent, sse_events
from fabstir_sidecar.wire.messages import JobRequest

__all__ = ["DEFAULT_MAX_RESPONSE_BYTES", "OpenAIBackend"]


class OpenAIBackend(HttpBackend):
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
        super().__init__(base_url, "/chat/completions", timeout, client, max_response_bytes)
        url = self._url
        # The URL as shown in messages: never a password embedded in base_url.
        shown = url.copy_with(username=url.username, password="***") if url.password else url
        self._endpoint = Endpoint(str(shown), timeout)
        self._api_key = api_key
        self._model_map: dict[str, str] = dict(model_map or {})

    @property
    def name(self) -> str:
        return "openai"

    @property
    def url(self) -> str:
        """The chat completions endpoint the backend posts to."""
        return self._endpoint.shown_url

    # ------------------------------------------------------------------ requests

    def _body(self, request: JobRequest, *, stream: bool) -> bytes:
        model = self._model_map.get(request.model, request.model)
        body = request_body(request, model=model, stream=stream)
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

    # ------------------------------------------------------------------ answers

    def _payload(self, data: bytes | str, what: str) -> dict[str, Any]:
        """A JSON object answer; an error body (one without ``choices``) raises."""
        payload = self._endpoint.json_object(data, what)
        message = error_message(payload)
        if message is not None and "choices" not in payload:
            raise self._endpoint.reported(message)
        return payload

    async def _read_completion(self, response: httpx.Response) -> Completion:
        body = await self._endpoint.read(response, limit=self._max_bytes, truncate=False)
        try:
            return parse_completion(self._payload(body, "the response"))
        except BadResponse as exc:
            raise self._endpoint.bad_response(str(exc)) from None

    def _apply_event(self, event: ServerSentEvent, state: StreamState) -> str | None:
        """Apply one SSE event to ``state``; the content piece it carries, if any."""
        if not event.data:
            return None  # an event without data (e.g. a bare "event:" line)
        if event.data.strip() == "[DONE]":
            state.done = True
            return None
        if event.event == "error":
            raise self._endpoint.reported(error_message(loads_or_none(event.data)) or event.data)
        try:
            return apply_chunk(self._payload(event.data, "a stream chunk"), state)
        except BadResponse as exc:
            raise self._endpoint.bad_response(str(exc)) from None

    # ------------------------------------------------------------------ complete

    async def complete(self, request: JobRequest) -> Completion:
        try:
            with anyio.fail_after(self._timeout):
                async with self._open(request, stream=False) as response:
                    await self._endpoint.raise_for_status(response, error_message)
                    return await self._read_completion(response)
        except httpx.HTTPError as exc:
            raise self._endpoint.transport_error(exc) from exc
        except TimeoutError:
            raise self._endpoint.timed_out() from None

    # ------------------------------------------------------------------ stream

    def stream(self, request: JobRequest) -> TokenStream:
        return TokenStream(self._stream_items(request))

    async def _stream_items(self, request: JobRequest) -> AsyncGenerator[str | StreamEnd, None]:
        endpoint, state = self._endpoint, StreamState()
        try:
            async with self._open(request, stream=True) as response:
                await endpoint.raise_for_status(response, error_message)
                state.started = True
                if response.headers.get("Content-Type", "").startswith("application/json"):
                    # The server ignored "stream": true and answered in one piece.
                    completion = await self._read_completion(response)
                    if completion.text:
                        yield completion.text
                    yield StreamEnd(completion.tokens_used, completion.finish_reason)
                    return
                events = sse_events(
                    response, max_bytes=self._max_bytes, too_large=endpoint.too_large
                )
                async with aclosing(events):
                    async for event in events:
                        piece = self._apply_event(event, state)
                        if piece:
                            yield piece
                        if state.done:
                            break
        except httpx.HTTPError as exc:
            # A server that drops the connection right after its final chunk (the one with a
            # finish_reason) has delivered everything; anything else is a failure.
            if isinstance(exc, httpx.TimeoutException) or not state.started:
                raise endpoint.transport_error(exc) from exc
            if state.finish_reason is None:
                raise endpoint.bad_response(
                    f"the stream broke off after {state.chunks} chunk(s) ({describe(exc)})"
                ) from exc
        if not state.complete:
            raise endpoint.bad_response(
                f"the stream ended before data: [DONE] after {state.chunks} chunk(s)"
            )
        tokens, finish_reason = state.end()
        yield StreamEnd(tokens_used=tokens, finish_reason=finish_reason)

    # ------------------------------------------------------------------ lifecycle

    def __repr__(self) -> str:
        return f"OpenAIBackend({self.url!r}, timeout={self._timeout!r})"
