"""Pure request parsing and response shapes of the job endpoints (HTTP_API.md 2.2 and 3)."""

from __future__ import annotations

import json
import math
import time
import uuid
from dataclasses import dataclass
from typing import Any

from fabstir_sidecar.gateway.errors import bad_request
from fabstir_sidecar.wire.messages import ChatMessage


@dataclass(frozen=True, slots=True)
class JobSpec:
    """What the gateway sends to a host, whichever endpoint it came from."""

    model: str
    prompt: str
    max_tokens: int | None
    temperature: float | None
    stream: bool
    messages: tuple[ChatMessage, ...] | None = None
    request_id: str | None = None


def _missing(name: str) -> Exception:
    return bad_request("missing_field", f"missing required field {name!r}")


def _invalid(name: str, why: str) -> Exception:
    return bad_request("invalid_field", f"field {name!r}: {why}")


def _model(body: dict[str, Any]) -> str:
    model = body.get("model")
    if model is None:
        raise _missing("model")
    if not isinstance(model, str) or not model:
        raise _invalid("model", "expected a non-empty string")
    return model


def _opt_count(body: dict[str, Any], name: str) -> int | None:
    value = body.get(name)
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < 2**53:
        raise _invalid(name, "expected an integer >= 0")
    return value


def _opt_temperature(body: dict[str, Any]) -> float | None:
    value = body.get("temperature")
    if value is None:
        return None
    if not isinstance(value, int | float) or isinstance(value, bool) or not math.isfinite(value):
        raise _invalid("temperature", "expected a number")
    return float(value)


def _opt_stream(body: dict[str, Any]) -> bool:
    value = body.get("stream")
    if value is None:
        return False
    if not isinstance(value, bool):
        raise _invalid("stream", "expected a boolean")
    return value


def _content(index: int, content: object) -> str:
    name = f"messages[{index}].content"
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise _invalid(name, "expected a string or a list of parts")
    texts = []
    for j, part in enumerate(content):
        if not isinstance(part, dict) or part.get("type") != "text":
            raise _invalid(f"{name}[{j}]", "only text parts are supported")
        text = part.get("text")
        if not isinstance(text, str):
            raise _invalid(f"{name}[{j}].text", "expected a string")
        texts.append(text)
    return "".join(texts)


def _messages(body: dict[str, Any]) -> tuple[ChatMessage, ...]:
    raw = body.get("messages")
    if raw is None:
        raise _missing("messages")
    if not isinstance(raw, list) or not raw:
        raise _invalid("messages", "expected a non-empty list")
    out = []
    for i, item in enumerate(raw):
        if not isinstance(item, dict):
            raise _invalid(f"messages[{i}]", "expected an object")
        role = item.get("role")
        if role is None:
            raise _missing(f"messages[{i}].role")
        if not isinstance(role, str) or not role:
            raise _invalid(f"messages[{i}].role", "expected a non-empty string")
        if "content" not in item or item["content"] is None:
            raise _missing(f"messages[{i}].content")
        out.append(ChatMessage(role=role, content=_content(i, item["content"])))
    return tuple(out)


def render_prompt(messages: tuple[ChatMessage, ...]) -> str:
    """``<role>: <content>`` lines, then ``assistant:`` (no trailing newline)."""
    return "\n".join(f"{m.role}: {m.content}" for m in messages) + "\nassistant:"


def parse_chat(body: dict[str, Any]) -> JobSpec:
    model = _model(body)
    messages = _messages(body)
    max_tokens = _opt_count(body, "max_completion_tokens")
    if max_tokens is None:
        max_tokens = _opt_count(body, "max_tokens")
    return JobSpec(
        model=model,
        prompt=render_prompt(messages),
        max_tokens=max_tokens,
        temperature=_opt_temperature(body),
        stream=_opt_stream(body),
        messages=messages,
    )


def parse_inference(body: dict[str, Any]) -> JobSpec:
    model = _model(body)
    prompt = body.get("prompt")
    if prompt is None:
        raise _missing("prompt")
    if not isinstance(prompt, str):
        raise _invalid("prompt", "expected a string")
    if body.get("max_tokens") is None:
        raise _missing("max_tokens")
    request_id = body.get("request_id")
    if request_id is not None and (
        not isinstance(request_id, str) or not 0 < len(request_id) <= 128
    ):
        raise _invalid("request_id", "expected a string of 1-128 characters")
    return JobSpec(
        model=model,
        prompt=prompt,
        max_tokens=_opt_count(body, "max_tokens"),
        temperature=_opt_temperature(body),
        stream=_opt_stream(body),
        request_id=request_id or uuid.uuid4().hex,
    )


def estimate_tokens(text: str) -> int:
    """A rough token count (about four characters a token), for ``prompt_tokens``."""
    return max(1, math.ceil(len(text) / 4)) if text else 0


class ChatIds:
    """The id, created time and model every chunk of one completion repeats."""

    __slots__ = ("_prefix", "created", "id", "model")

    def __init__(self, model: str) -> None:
        self.id = f"chatcmpl-{uuid.uuid4().hex}"
        self.created = int(time.time())
        self.model = model
        head = json.dumps({"id": self.id, "object": "chat.completion.chunk"})[:-1]
        self._prefix = (
            f'{head}, "created": {self.created}, "model": {json.dumps(self.model)}, '
            '"choices": [{"index": 0, '
        )

    def completion(
        self, content: str, finish_reason: str, prompt: str, used: int
    ) -> dict[str, Any]:
        prompt_tokens = estimate_tokens(prompt)
        return {
            "id": self.id,
            "object": "chat.completion",
            "created": self.created,
            "model": self.model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": content},
                    "finish_reason": finish_reason,
                }
            ],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": used,
                "total_tokens": prompt_tokens + used,
            },
        }

    def chunk(self, text: str, *, first: bool = False) -> bytes:
        """One SSE event carrying a token (built by string concatenation: the hot path)."""
        role = '"role": "assistant", ' if first else ""
        delta = f'{{{role}"content": {json.dumps(text, ensure_ascii=False)}}}'
        return f'data: {self._prefix}"delta": {delta}, "finish_reason": null}}]}}\n\n'.encode()

    def last_chunk(self, finish_reason: str) -> bytes:
        return (
            f'data: {self._prefix}"delta": {{}}, "finish_reason": {json.dumps(finish_reason)}}}]}}'
            "\n\n"
        ).encode()


def sse(payload: object) -> bytes:
    return f"data: {json.dumps(payload, ensure_ascii=False)}\n\n".encode()


DONE = b"data: [DONE]\n\n"
