"""Typed, validated messages of PROTOCOL.md section 3.

Each message is a frozen dataclass with ``to_json()`` (a dict ready for
:func:`~fabstir_sidecar.wire.json_codec.encode_json`: snake_case keys, ``type``
first, optional fields omitted when None) and ``from_json(d)``, which validates
untrusted input and raises :class:`BadRequestError` naming the offending field.
Constructors trust their (type-checked) caller; only ``from_json`` validates.

Validation rules, beyond the spec's JSON types (``I`` is an integer and never a
boolean; ``F`` accepts an integer too):

* identifiers (job_id, model, peer_id, request_id, addrs/models entries, error
  code, api_url) must be non-empty; free text (prompt, text, content, reason,
  message, finish_reason, version, model_used) may be empty;
* job_id is 1-128 characters, counted in Unicode code points;
* every integer is within +/-(2**53 - 1), the range JavaScript peers represent
  exactly, and counts (max_tokens, tokens_used, reputation, uptime_s, active_jobs,
  max_jobs, limit) are non-negative;
* an optional field that is ``null`` is treated as absent (serde writes None so);
* unknown fields are ignored; an unknown error ``code`` is accepted as is;
* location must be two ASCII letters and is normalised to upper case;
* discovery ``limit``: absent means 20; below 1 is a bad request; above 100 is
  clamped to 100 (asking for more is not an error, the answer is just capped).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Final, Self, TypeAlias

from fabstir_sidecar.errors import MalformedMessageError
from fabstir_sidecar.wire.json_codec import json_type_name

__all__ = [
    "DEFAULT_DISCOVERY_LIMIT",
    "ERROR_BAD_REQUEST",
    "ERROR_CODES",
    "ERROR_INTERNAL",
    "ERROR_TIMEOUT",
    "ERROR_TOO_LARGE",
    "INFERENCE_TAG",
    "MAX_DISCOVERY_LIMIT",
    "MAX_JOB_ID_LENGTH",
    "MAX_SAFE_INTEGER",
    "BadRequestError",
    "ChatMessage",
    "DiscoveryRequest",
    "DiscoveryResponse",
    "ErrorMessage",
    "Host",
    "InferenceRequest",
    "InferenceResponse",
    "JobRejected",
    "JobRequest",
    "JobResponse",
    "JobResult",
    "JobToken",
    "PeerInfo",
    "Status",
    "StatusRequest",
    "parse_job_response",
]

ERROR_BAD_REQUEST: Final = "bad_request"
ERROR_TOO_LARGE: Final = "too_large"
ERROR_INTERNAL: Final = "internal"
ERROR_TIMEOUT: Final = "timeout"
ERROR_CODES: Final = frozenset({ERROR_BAD_REQUEST, ERROR_TOO_LARGE, ERROR_INTERNAL, ERROR_TIMEOUT})

MAX_JOB_ID_LENGTH: Final = 128
DEFAULT_DISCOVERY_LIMIT: Final = 20
MAX_DISCOVERY_LIMIT: Final = 100
MAX_SAFE_INTEGER: Final = 2**53 - 1
INFERENCE_TAG: Final = "Inference"
"""serde's external tag of the fabstir-llm-node inference messages."""


class BadRequestError(MalformedMessageError):
    """A decoded message has a missing field, a wrong type or an invalid value.

    ``field`` is the path of the offending field (e.g. ``status.host.reputation``);
    a responder answers it with an ``error`` frame of code ``bad_request``.
    """

    def __init__(self, field: str, reason: str) -> None:
        self.field = field
        self.reason = reason
        super().__init__(f"{field}: {reason}")


# ------------------------------------------------------------------ field access


def _show(value: object) -> str:
    text = json.dumps(value, ensure_ascii=True, default=repr)
    return text if len(text) <= 40 else text[:37] + "..."


class _Fields:
    """Typed reads of one JSON object's fields; every error names the field's path."""

    __slots__ = ("_data", "_path")

    def __init__(self, data: object, path: str) -> None:
        if not isinstance(data, Mapping):
            raise BadRequestError(path, f"expected object, got {json_type_name(data)}")
        self._data: Mapping[str, Any] = data
        self._path = path

    @classmethod
    def message(cls, data: object, type_: str) -> _Fields:
        """The fields of a message whose ``type`` must be ``type_``."""
        fields = cls(data, type_)
        actual = fields.string("type")
        if actual != type_:
            raise BadRequestError(
                fields.at("type"), f"expected {_show(type_)}, got {_show(actual)}"
            )
        return fields

    def at(self, name: str) -> str:
        return f"{self._path}.{name}"

    def _get(self, name: str, required: bool) -> object:
        value = self._data.get(name)
        if value is None and required and name not in self._data:
            raise BadRequestError(self.at(name), "missing required field")
        return value

    def _fail(self, name: str, expected: str, value: object) -> BadRequestError:
        return BadRequestError(self.at(name), f"expected {expected}, got {json_type_name(value)}")

    # strings

    def _str(self, name: str, value: object, non_empty: bool, max_len: int | None) -> str:
        if not isinstance(value, str):
            raise self._fail(name, "string", value)
        if non_empty and not value:
            raise BadRequestError(self.at(name), "must not be empty")
        if max_len is not None and len(value) > max_len:
            raise BadRequestError(
                self.at(name), f"must be at most {max_len} characters, got {len(value)}"
            )
        return value

    def string(self, name: str, *, non_empty: bool = False, max_len: int | None = None) -> str:
        return self._str(name, self._get(name, True), non_empty, max_len)

    def opt_string(self, name: str, *, non_empty: bool = False) -> str | None:
        value = self._get(name, False)
        return None if value is None else self._str(name, value, non_empty, None)

    def job_id(self) -> str:
        return self._str("job_id", self._get("job_id", True), True, MAX_JOB_ID_LENGTH)

    def opt_job_id(self) -> str | None:
        value = self._get("job_id", False)
        return None if value is None else self._str("job_id", value, True, MAX_JOB_ID_LENGTH)

    # numbers and booleans

    def _int(self, name: str, value: object, min_value: int) -> int:
        if not isinstance(value, int) or isinstance(value, bool):
            raise self._fail(name, "integer", value)
        if not min_value <= value <= MAX_SAFE_INTEGER:
            raise BadRequestError(
                self.at(name), f"must be between {min_value} and {MAX_SAFE_INTEGER}, got {value}"
            )
        return value

    def integer(self, name: str, *, min_value: int = -MAX_SAFE_INTEGER) -> int:
        return self._int(name, self._get(name, True), min_value)

    def opt_integer(self, name: str, *, min_value: int = -MAX_SAFE_INTEGER) -> int | None:
        value = self._get(name, False)
        return None if value is None else self._int(name, value, min_value)

    def _float(self, name: str, value: object) -> float:
        if not isinstance(value, int | float) or isinstance(value, bool):
            raise self._fail(name, "number", value)
        number = float(value)
        if not math.isfinite(number):
            raise BadRequestError(self.at(name), "expected a finite number")
        return number

    def number(self, name: str) -> float:
        return self._float(name, self._get(name, True))

    def opt_number(self, name: str) -> float | None:
        value = self._get(name, False)
        return None if value is None else self._float(name, value)

    def _bool(self, name: str, value: object) -> bool:
        if not isinstance(value, bool):
            raise self._fail(name, "boolean", value)
        return value

    def boolean(self, name: str) -> bool:
        return self._bool(name, self._get(name, True))

    def opt_boolean(self, name: str) -> bool | None:
        value = self._get(name, False)
        return None if value is None else self._bool(name, value)

    # containers

    def _list(self, name: str, value: object) -> list[Any]:
        if not isinstance(value, list):
            raise self._fail(name, "array", value)
        return value

    def _str_list(self, name: str, value: object) -> tuple[str, ...]:
        items = self._list(name, value)
        for i, item in enumerate(items):
            self._str(f"{name}[{i}]", item, True, None)
        return tuple(items)

    def str_list(self, name: str) -> tuple[str, ...]:
        """An array of non-empty strings."""
        return self._str_list(name, self._get(name, True))

    def opt_str_list(self, name: str) -> tuple[str, ...] | None:
        value = self._get(name, False)
        return None if value is None else self._str_list(name, value)

    def obj(self, name: str) -> _Fields:
        return _Fields(self._get(name, True), self.at(name))

    def obj_list(self, name: str) -> list[_Fields]:
        items = self._list(name, self._get(name, True))
        return [_Fields(item, f"{self.at(name)}[{i}]") for i, item in enumerate(items)]


def _without_none(d: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in d.items() if value is not None}


def _country_code(fields: _Fields, name: str) -> str | None:
    code = fields.opt_string(name)
    if code is None:
        return None
    if len(code) != 2 or not (code.isascii() and code.isalpha()):
        raise BadRequestError(
            fields.at(name), f"expected an ISO 3166-1 alpha-2 code (two letters), got {_show(code)}"
        )
    return code.upper()


# ------------------------------------------------------------------ 3.1 job


@dataclass(frozen=True, slots=True)
class ChatMessage:
    """One entry of a job's ``messages``: the chat the prompt was rendered from."""

    role: str
    content: str

    def to_json(self) -> dict[str, Any]:
        return {"role": self.role, "content": self.content}


def _chat_messages(f: _Fields, name: str) -> tuple[ChatMessage, ...] | None:
    if f._get(name, False) is None:
        return None
    return tuple(
        ChatMessage(role=m.string("role", non_empty=True), content=m.string("content"))
        for m in f.obj_list(name)
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class JobRequest:
    TYPE: ClassVar[str] = "job_request"
    job_id: str
    model: str
    prompt: str
    max_tokens: int | None = None
    temperature: float | None = None
    stream: bool = False
    messages: tuple[ChatMessage, ...] | None = None

    def to_json(self) -> dict[str, Any]:
        return _without_none(
            {
                "type": self.TYPE,
                "job_id": self.job_id,
                "model": self.model,
                "prompt": self.prompt,
                "max_tokens": self.max_tokens,
                "temperature": self.temperature,
                "stream": self.stream,
                "messages": None if self.messages is None else [m.to_json() for m in self.messages],
            }
        )

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> Self:
        f = _Fields.message(d, cls.TYPE)
        return cls(
            job_id=f.job_id(),
            model=f.string("model", non_empty=True),
            prompt=f.string("prompt"),
            max_tokens=f.opt_integer("max_tokens", min_value=0),
            temperature=f.opt_number("temperature"),
            stream=f.opt_boolean("stream") or False,
            messages=_chat_messages(f, "messages"),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class JobToken:
    TYPE: ClassVar[str] = "job_token"
    job_id: str
    text: str

    def to_json(self) -> dict[str, Any]:
        return {"type": self.TYPE, "job_id": self.job_id, "text": self.text}

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> Self:
        # The hot path of a streamed job: check a valid token directly; anything else takes
        # the general path, which says exactly what is wrong.
        if isinstance(d, dict) and d.get("type") == cls.TYPE:
            job_id, text = d.get("job_id"), d.get("text")
            if type(job_id) is str and 0 < len(job_id) <= MAX_JOB_ID_LENGTH and type(text) is str:
                return cls(job_id=job_id, text=text)
        f = _Fields.message(d, cls.TYPE)
        return cls(job_id=f.job_id(), text=f.string("text"))


@dataclass(frozen=True, slots=True, kw_only=True)
class JobResult:
    TYPE: ClassVar[str] = "job_result"
    job_id: str
    content: str
    tokens_used: int
    finish_reason: str

    def to_json(self) -> dict[str, Any]:
        return {
            "type": self.TYPE,
            "job_id": self.job_id,
            "content": self.content,
            "tokens_used": self.tokens_used,
            "finish_reason": self.finish_reason,
        }

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> Self:
        f = _Fields.message(d, cls.TYPE)
        return cls(
            job_id=f.job_id(),
            content=f.string("content"),
            tokens_used=f.integer("tokens_used", min_value=0),
            finish_reason=f.string("finish_reason"),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class JobRejected:
    TYPE: ClassVar[str] = "job_rejected"
    job_id: str
    reason: str

    def to_json(self) -> dict[str, Any]:
        return {"type": self.TYPE, "job_id": self.job_id, "reason": self.reason}

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> Self:
        f = _Fields.message(d, cls.TYPE)
        return cls(job_id=f.job_id(), reason=f.string("reason"))


@dataclass(frozen=True, slots=True, kw_only=True)
class ErrorMessage:
    """An ``error`` frame; ``code`` is normally one of :data:`ERROR_CODES`."""

    TYPE: ClassVar[str] = "error"
    code: str
    message: str
    job_id: str | None = None

    def to_json(self) -> dict[str, Any]:
        return _without_none(
            {"type": self.TYPE, "job_id": self.job_id, "code": self.code, "message": self.message}
        )

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> Self:
        f = _Fields.message(d, cls.TYPE)
        return cls(
            job_id=f.opt_job_id(),
            code=f.string("code", non_empty=True),
            message=f.string("message"),
        )


JobResponse: TypeAlias = JobToken | JobResult | JobRejected | ErrorMessage

_JOB_RESPONSE_TYPES: Final[dict[str, type[JobResponse]]] = {
    JobToken.TYPE: JobToken,
    JobResult.TYPE: JobResult,
    JobRejected.TYPE: JobRejected,
    ErrorMessage.TYPE: ErrorMessage,
}


def parse_job_response(d: Mapping[str, Any]) -> JobResponse:
    """Validate a frame read on the job protocol, dispatching on its ``type``.

    Everything but :class:`JobToken` is terminal: the host closes the stream after it.
    """
    kind = d.get("type") if isinstance(d, dict) else None
    if type(kind) is not str:
        kind = _Fields(d, "job_response").string("type")
    cls = _JOB_RESPONSE_TYPES.get(kind)
    if cls is None:
        expected = ", ".join(_JOB_RESPONSE_TYPES)
        raise BadRequestError("job_response.type", f"expected one of {expected}, got {_show(kind)}")
    return cls.from_json(d)


# ------------------------------------------------------------------ 3.2 status


@dataclass(frozen=True, slots=True, kw_only=True)
class StatusRequest:
    TYPE: ClassVar[str] = "status_request"

    def to_json(self) -> dict[str, Any]:
        return {"type": self.TYPE}

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> Self:
        _Fields.message(d, cls.TYPE)
        return cls()


@dataclass(frozen=True, slots=True, kw_only=True)
class Host:
    """The HOST record: what a host says about itself in its ``status``."""

    peer_id: str
    addrs: tuple[str, ...]
    models: tuple[str, ...]
    reputation: int
    uptime_s: int
    active_jobs: int
    max_jobs: int
    version: str
    location: str | None = None
    api_url: str | None = None

    def to_json(self) -> dict[str, Any]:
        return _without_none(
            {
                "peer_id": self.peer_id,
                "addrs": list(self.addrs),
                "models": list(self.models),
                "reputation": self.reputation,
                "uptime_s": self.uptime_s,
                "location": self.location,
                "api_url": self.api_url,
                "active_jobs": self.active_jobs,
                "max_jobs": self.max_jobs,
                "version": self.version,
            }
        )

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> Self:
        return cls._parse(_Fields(d, "host"))

    @classmethod
    def _parse(cls, f: _Fields) -> Self:
        return cls(
            peer_id=f.string("peer_id", non_empty=True),
            addrs=f.str_list("addrs"),
            models=f.str_list("models"),
            reputation=f.integer("reputation", min_value=0),
            uptime_s=f.integer("uptime_s", min_value=0),
            location=_country_code(f, "location"),
            api_url=f.opt_string("api_url", non_empty=True),
            active_jobs=f.integer("active_jobs", min_value=0),
            max_jobs=f.integer("max_jobs", min_value=0),
            version=f.string("version"),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class Status:
    TYPE: ClassVar[str] = "status"
    host: Host

    def to_json(self) -> dict[str, Any]:
        return {"type": self.TYPE, "host": self.host.to_json()}

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> Self:
        f = _Fields.message(d, cls.TYPE)
        return cls(host=Host._parse(f.obj("host")))


# ------------------------------------------------------------------ 3.3 discovery


@dataclass(frozen=True, slots=True, kw_only=True)
class DiscoveryRequest:
    """``models`` None (or empty): no filter. ``from_json`` clamps ``limit`` to 100."""

    TYPE: ClassVar[str] = "discovery_request"
    models: tuple[str, ...] | None = None
    limit: int = DEFAULT_DISCOVERY_LIMIT

    def to_json(self) -> dict[str, Any]:
        models = None if self.models is None else list(self.models)
        return _without_none({"type": self.TYPE, "models": models, "limit": self.limit})

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> Self:
        f = _Fields.message(d, cls.TYPE)
        limit = f.opt_integer("limit", min_value=1)
        return cls(
            models=f.opt_str_list("models"),
            limit=DEFAULT_DISCOVERY_LIMIT if limit is None else min(limit, MAX_DISCOVERY_LIMIT),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class PeerInfo:
    """One peer of a discovery response: a hint to dial, never trusted as such."""

    peer_id: str
    addrs: tuple[str, ...]
    models: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        return {"peer_id": self.peer_id, "addrs": list(self.addrs), "models": list(self.models)}

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> Self:
        return cls._parse(_Fields(d, "peer"))

    @classmethod
    def _parse(cls, f: _Fields) -> Self:
        return cls(
            peer_id=f.string("peer_id", non_empty=True),
            addrs=f.str_list("addrs"),
            models=f.str_list("models"),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class DiscoveryResponse:
    TYPE: ClassVar[str] = "discovery_response"
    peers: tuple[PeerInfo, ...]

    def to_json(self) -> dict[str, Any]:
        return {"type": self.TYPE, "peers": [peer.to_json() for peer in self.peers]}

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> Self:
        f = _Fields.message(d, cls.TYPE)
        return cls(peers=tuple(PeerInfo._parse(p) for p in f.obj_list("peers")))


# ------------------------------------------------------------------ 3.4 inference


def _inference_fields(d: Mapping[str, Any], name: str) -> _Fields:
    return _Fields(d, name).obj(INFERENCE_TAG)


@dataclass(frozen=True, slots=True, kw_only=True)
class InferenceRequest:
    """fabstir-llm-node's request, ``{"Inference": {...}}``; every field is required."""

    request_id: str
    model: str
    prompt: str
    max_tokens: int
    temperature: float
    stream: bool

    def to_json(self) -> dict[str, Any]:
        return {
            INFERENCE_TAG: {
                "request_id": self.request_id,
                "model": self.model,
                "prompt": self.prompt,
                "max_tokens": self.max_tokens,
                "temperature": self.temperature,
                "stream": self.stream,
            }
        }

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> Self:
        f = _inference_fields(d, "inference_request")
        return cls(
            request_id=f.string("request_id", non_empty=True),
            model=f.string("model", non_empty=True),
            prompt=f.string("prompt"),
            max_tokens=f.integer("max_tokens", min_value=0),
            temperature=f.number("temperature"),
            stream=f.boolean("stream"),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class InferenceResponse:
    """fabstir-llm-node's response, ``{"Inference": {...}}``; every field is required."""

    request_id: str
    content: str
    tokens_used: int
    model_used: str
    finish_reason: str

    def to_json(self) -> dict[str, Any]:
        return {
            INFERENCE_TAG: {
                "request_id": self.request_id,
                "content": self.content,
                "tokens_used": self.tokens_used,
                "model_used": self.model_used,
                "finish_reason": self.finish_reason,
            }
        }

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> Self:
        f = _inference_fields(d, "inference_response")
        return cls(
            request_id=f.string("request_id", non_empty=True),
            content=f.string("content"),
            tokens_used=f.integer("tokens_used", min_value=0),
            model_used=f.string("model_used"),
            finish_reason=f.string("finish_reason"),
        )
