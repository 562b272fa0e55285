"""OpenAI chat-completions semantics, pure: the request a job becomes, and what answers mean.

No I/O here. A response that does not have the expected shape raises :class:`BadResponse`
with the problem; the backend turns it into a ``BackendError`` naming its endpoint.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from fabstir_sidecar.backend import Completion
from fabstir_sidecar.wire.messages import JobRequest

__all__ = [
    "BadResponse",
    "StreamState",
    "apply_chunk",
    "chat_messages",
    "error_message",
    "parse_completion",
    "request_body",
]


class BadResponse(Exception):
    """The server's answer is not what an OpenAI-compatible server sends."""


def chat_messages(request: JobRequest) -> list[dict[str, str]]:
    """The job's chat if it carries one (not empty), else its prompt as one user message."""
    if request.messages:
        return [{"role": m.role, "content": m.content} for m in request.messages]
    return [{"role": "user", "content": request.prompt}]


def request_body(request: JobRequest, *, model: str, stream: bool) -> dict[str, Any]:
    body: dict[str, Any] = {"model": model, "messages": chat_messages(request), "stream": stream}
    if request.max_tokens is not None:
        body["max_tokens"] = request.max_tokens
    if request.temperature is not None:
        body["temperature"] = request.temperature
    return body


def error_message(payload: object) -> str | None:
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


def parse_completion(payload: Mapping[str, Any]) -> Completion:
    """A non-streamed ``chat.completion``; without usage, tokens are counted as words."""
    choices = payload.get("choices")
    if not isinstance(choices, list) or not choices:
        raise BadResponse("no choices[0] in the response")
    choice = choices[0]
    message = choice.get("message") if isinstance(choice, dict) else None
    if not isinstance(message, dict) or "content" not in message:
        raise BadResponse("no choices[0].message.content in the response")
    content = message["content"]
    if content is None:  # e.g. a refusal or a tool call: no text
        content = ""
    if not isinstance(content, str):
        raise BadResponse("choices[0].message.content is not a string")
    finish_reason = choice.get("finish_reason")
    tokens = _completion_tokens(payload)
    return Completion(
        text=content,
        tokens_used=tokens if tokens is not None else len(content.split()),
        finish_reason=finish_reason if isinstance(finish_reason, str) and finish_reason else "stop",
    )


class StreamState:
    """What a streamed response told us so far."""

    __slots__ = ("chunks", "done", "finish_reason", "started", "usage_tokens")

    def __init__(self) -> None:
        self.started = False  # got a 2xx status: failures from here on are mid-stream
        self.chunks = 0  # chunks with non-empty content
        self.done = False  # saw data: [DONE]
        self.finish_reason: str | None = None
        self.usage_tokens: int | None = None

    @property
    def complete(self) -> bool:
        """The server said it finished: ``[DONE]``, or a finish_reason before the stream ended."""
        return self.done or self.finish_reason is not None

    def end(self) -> tuple[int, str]:
        """(tokens used, finish reason): usage if reported, else the content chunk count."""
        tokens = self.usage_tokens if self.usage_tokens is not None else self.chunks
        return tokens, self.finish_reason or "stop"


def apply_chunk(payload: Mapping[str, Any], state: StreamState) -> str | None:
    """Apply one ``chat.completion.chunk`` to ``state``; the content piece it carries, if any."""
    tokens = _completion_tokens(payload)
    if tokens is not None:
        state.usage_tokens = tokens
    choices = payload.get("choices")
    if choices is None or choices == []:  # e.g. the final usage-only chunk
        return None
    if not isinstance(choices, list) or not isinstance(choices[0], dict):
        raise BadResponse("a stream chunk has no choices[0] object")
    choice = choices[0]
    finish_reason = choice.get("finish_reason")
    if isinstance(finish_reason, str) and finish_reason:
        state.finish_reason = finish_reason
    delta = choice.get("delta")
    if delta is None:
        return None
    if not isinstance(delta, dict):
        raise BadResponse("choices[0].delta of a stream chunk is not an object")
    content = delta.get("content")
    if content is None or content == "":  # a role-only or final delta
        return None
    if not isinstance(content, str):
        raise BadResponse("choices[0].delta.content of a stream chunk is not a string")
    state.chunks += 1
    return content
