"""Typed, validated messages of docs/protocol.md §6, declared as schema tables.

Each message is a frozen dataclass whose fields carry their wire kind (see
:mod:`~fabstir_sidecar.wire.schema`): ``to_json()`` gives a dict ready for
:func:`~fabstir_sidecar.wire.json_codec.encode_json` (snake_case keys, ``type`` first,
optional fields omitted when None) and ``from_json(d)`` validates untrusted input, raising
:class:`BadRequestError` naming the offending field.

Validation rules, beyond the spec's JSON types (``I`` is an integer and never a
boolean; ``F`` accepts an integer too):

* identifiers (job_id, model, peer_id, request_id, addrs/models entries, error and
  rejection code, api_url, chat role) must be non-empty; free text (prompt, text, content,
  reason, message, finish_reason, version, model_used) may be empty;
* job_id is 1-128 characters, counted in Unicode code points;
* every integer is within +/-(2**53 - 1), the range JavaScript peers represent
  exactly, and counts (max_tokens, tokens_used, reputation, uptime_s, active_jobs,
  max_jobs, limit, retry_after_ms) are non-negative;
* an optional field that is ``null`` is treated as absent (serde writes None so);
* unknown fields are ignored; an unknown error or rejection ``code`` is accepted as is;
* location must be two ASCII letters and is normalised to upper case;
* discovery ``limit``: absent means 20; below 1 is a bad request; above 100 is
  clamped to 100 (asking for more is not an error, the answer is just capped).
"""

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar, Final, Self, TypeAlias

from fabstir_sidecar.wire.codes import (
    ERROR_BAD_REQUEST,
    ERROR_BUSY,
    ERROR_CODES,
    ERROR_INTERNAL,
    ERROR_TIMEOUT,
    ERROR_TOO_LARGE,
)
from fabstir_sidecar.wire.schema import (
    COUNT,
    FLAG,
    IDENT,
    MAX_SAFE_INTEGER,
    NUMBER,
    TEXT,
    BadRequestError,
    Integer,
    Message,
    Record,
    RecordList,
    Text,
    TextList,
    expect_object,
    read_field,
    schema,
    show,
)

__all__ = [
    "DEFAULT_DISCOVERY_LIMIT",
    "ERROR_BAD_REQUEST",
    "ERROR_BUSY",
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

MAX_JOB_ID_LENGTH: Final = 128
DEFAULT_DISCOVERY_LIMIT: Final = 20
MAX_DISCOVERY_LIMIT: Final = 100
INFERENCE_TAG: Final = "Inference"
"""serde's external tag of the fabstir-llm-node inference messages."""

JOB_ID: Final = Text(non_empty=True, max_len=MAX_JOB_ID_LENGTH)
TEXT_LIST: Final = TextList()


class _CountryCode(Text):
    """ISO 3166-1 alpha-2: two ASCII letters, normalised to upper case."""

    __slots__ = ()

    def decode(self, value: object, path: str) -> str:
        code = super().decode(value, path)
        if len(code) != 2 or not (code.isascii() and code.isalpha()):
            raise BadRequestError(
                path, f"expected an ISO 3166-1 alpha-2 code (two letters), got {show(code)}"
            )
        return code.upper()


class _DiscoveryLimit(Integer):
    """At least 1; above :data:`MAX_DISCOVERY_LIMIT` is clamped, not refused."""

    __slots__ = ()

    def decode(self, value: object, path: str) -> int:
        return min(super().decode(value, path), MAX_DISCOVERY_LIMIT)


# ------------------------------------------------------------------ 3.1 job


@schema
@dataclass(frozen=True, slots=True)
class ChatMessage(Message):
    """One message of the chat a job's prompt was rendered from."""

    PATH: ClassVar[str] = "chat_message"
    role: Annotated[str, IDENT]
    content: Annotated[str, TEXT]


@schema
class JobRequest(Message):
    """``messages``, when present, is the chat ``prompt`` was rendered from."""

    TYPE: ClassVar[str] = "job_request"
    job_id: Annotated[str, JOB_ID]
    model: Annotated[str, IDENT]
    prompt: Annotated[str, TEXT]
    max_tokens: Annotated[int | None, COUNT] = None
    temperature: Annotated[float | None, NUMBER] = None
    stream: Annotated[bool, FLAG] = False
    messages: Annotated[tuple[ChatMessage, ...] | None, RecordList(ChatMessage)] = None


@schema
class JobToken(Message):
    TYPE: ClassVar[str] = "job_token"
    job_id: Annotated[str, JOB_ID]
    text: Annotated[str, TEXT]

    def to_json(self) -> dict[str, Any]:
        return {"type": "job_token", "job_id": self.job_id, "text": self.text}

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> Self:
        # The hot path of a streamed job: check a valid token directly; anything else takes
        # the general path, which says exactly what is wrong.
        if isinstance(d, dict) and d.get("type") == "job_token":
            job_id, text = d.get("job_id"), d.get("text")
            if type(job_id) is str and 0 < len(job_id) <= MAX_JOB_ID_LENGTH and type(text) is str:
                return cls(job_id=job_id, text=text)
        return cls.decode_at(d, cls.PATH)


@schema
class JobResult(Message):
    TYPE: ClassVar[str] = "job_result"
    job_id: Annotated[str, JOB_ID]
    content: Annotated[str, TEXT]
    tokens_used: Annotated[int, COUNT]
    finish_reason: Annotated[str, TEXT]


@schema
class JobRejected(Message):
    """``code`` is normally one of :data:`~fabstir_sidecar.wire.codes.REJECTED_CODES`."""

    TYPE: ClassVar[str] = "job_rejected"
    job_id: Annotated[str, JOB_ID]
    reason: Annotated[str, TEXT]
    code: Annotated[str | None, IDENT] = None
    retry_after_ms: Annotated[int | None, COUNT] = None


@schema
class ErrorMessage(Message):
    """An ``error`` frame; ``code`` is normally one of :data:`ERROR_CODES`."""

    TYPE: ClassVar[str] = "error"
    job_id: Annotated[str | None, JOB_ID] = None
    code: Annotated[str, IDENT]
    message: Annotated[str, TEXT]
    retry_after_ms: Annotated[int | None, COUNT] = None


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
        kind = read_field(expect_object(d, "job_response"), "type", TEXT, "job_response")
    cls = _JOB_RESPONSE_TYPES.get(kind)
    if cls is None:
        expected = ", ".join(_JOB_RESPONSE_TYPES)
        raise BadRequestError("job_response.type", f"expected one of {expected}, got {show(kind)}")
    return cls.from_json(d)


# ------------------------------------------------------------------ 3.2 status


@schema
class StatusRequest(Message):
    TYPE: ClassVar[str] = "status_request"


@schema
class Host(Message):
    """The HOST record: what a host says about itself in its ``status``."""

    PATH: ClassVar[str] = "host"
    peer_id: Annotated[str, IDENT]
    addrs: Annotated[tuple[str, ...], TEXT_LIST]
    models: Annotated[tuple[str, ...], TEXT_LIST]
    reputation: Annotated[int, COUNT]
    uptime_s: Annotated[int, COUNT]
    location: Annotated[str | None, _CountryCode()] = None
    api_url: Annotated[str | None, IDENT] = None
    active_jobs: Annotated[int, COUNT]
    max_jobs: Annotated[int, COUNT]
    version: Annotated[str, TEXT]


@schema
class Status(Message):
    TYPE: ClassVar[str] = "status"
    host: Annotated[Host, Record(Host)]


# ------------------------------------------------------------------ 3.3 discovery


@schema
class DiscoveryRequest(Message):
    """``models`` None (or empty): no filter. ``from_json`` clamps ``limit`` to 100."""

    TYPE: ClassVar[str] = "discovery_request"
    models: Annotated[tuple[str, ...] | None, TEXT_LIST] = None
    limit: Annotated[int, _DiscoveryLimit(min_value=1)] = DEFAULT_DISCOVERY_LIMIT


@schema
class PeerInfo(Message):
    """One peer of a discovery response: a hint to dial, never trusted as such."""

    PATH: ClassVar[str] = "peer"
    peer_id: Annotated[str, IDENT]
    addrs: Annotated[tuple[str, ...], TEXT_LIST]
    models: Annotated[tuple[str, ...], TEXT_LIST]


@schema
class DiscoveryResponse(Message):
    TYPE: ClassVar[str] = "discovery_response"
    peers: Annotated[tuple[PeerInfo, ...], RecordList(PeerInfo)]


# ------------------------------------------------------------------ 3.4 inference


@schema
class InferenceRequest(Message):
    """fabstir-llm-node's request, ``{"Inference": {...}}``; every field is required."""

    TAG: ClassVar[str] = INFERENCE_TAG
    PATH: ClassVar[str] = "inference_request"
    request_id: Annotated[str, IDENT]
    model: Annotated[str, IDENT]
    prompt: Annotated[str, TEXT]
    max_tokens: Annotated[int, COUNT]
    temperature: Annotated[float, NUMBER]
    stream: Annotated[bool, FLAG]


@schema
class InferenceResponse(Message):
    """fabstir-llm-node's response, ``{"Inference": {...}}``; every field is required."""

    TAG: ClassVar[str] = INFERENCE_TAG
    PATH: ClassVar[str] = "inference_response"
    request_id: Annotated[str, IDENT]
    content: Annotated[str, TEXT]
    tokens_used: Annotated[int, COUNT]
    model_used: Annotated[str, TEXT]
    finish_reason: Annotated[str, TEXT]
