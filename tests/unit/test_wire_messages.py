"""Unit tests for fabstir_sidecar.wire.messages (pure: no I/O)."""

from __future__ import annotations

import math
import re
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fabstir_sidecar.core.errors import MalformedMessageError, ProtocolError
from fabstir_sidecar.wire import codes
from fabstir_sidecar.wire.json_codec import decode_json_object, encode_json
from fabstir_sidecar.wire.messages import (
    DEFAULT_DISCOVERY_LIMIT,
    MAX_DISCOVERY_LIMIT,
    MAX_JOB_ID_LENGTH,
    MAX_SAFE_INTEGER,
    BadRequestError,
    ChatMessage,
    DiscoveryRequest,
    DiscoveryResponse,
    ErrorMessage,
    Host,
    InferenceRequest,
    InferenceResponse,
    JobRejected,
    JobRequest,
    JobResult,
    JobToken,
    PeerInfo,
    Status,
    StatusRequest,
    parse_job_response,
)
from tests.wire_samples import HOST_JSON

HOST = Host(
    peer_id="12D3KooWHost",
    addrs=("/ip4/127.0.0.1/tcp/4001",),
    models=("llama-3.2-1b-instruct",),
    reputation=90,
    uptime_s=3600,
    location="US",
    api_url="http://127.0.0.1:8080",
    active_jobs=1,
    max_jobs=4,
    version="0.1.0",
)
INFERENCE_REQUEST_JSON: dict[str, Any] = {
    "Inference": {
        "request_id": "r1",
        "model": "m",
        "prompt": "hi",
        "max_tokens": 10,
        "temperature": 0.7,
        "stream": False,
    }
}
INFERENCE_RESPONSE_JSON: dict[str, Any] = {
    "Inference": {
        "request_id": "r1",
        "content": "hello",
        "tokens_used": 3,
        "model_used": "m",
        "finish_reason": "stop",
    }
}


def bad_request(field: str, reason: str) -> Any:
    """pytest.raises for a BadRequestError on ``field`` whose message is exactly so."""
    return pytest.raises(BadRequestError, match=f"^{re.escape(field)}: {re.escape(reason)}$")


# ------------------------------------------------------------------ to_json goldens


def test_job_request_to_json_and_bytes() -> None:
    msg = JobRequest(job_id="j1", model="m", prompt="p")
    assert msg.to_json() == {
        "type": "job_request",
        "job_id": "j1",
        "model": "m",
        "prompt": "p",
        "stream": False,
    }
    assert encode_json(msg.to_json()) == (
        b'{"type":"job_request","job_id":"j1","model":"m","prompt":"p","stream":false}'
    )
    full = JobRequest(job_id="j", model="m", prompt="", max_tokens=5, temperature=0.5, stream=True)
    assert full.to_json() == {
        "type": "job_request",
        "job_id": "j",
        "model": "m",
        "prompt": "",
        "max_tokens": 5,
        "temperature": 0.5,
        "stream": True,
    }


@pytest.mark.parametrize(
    ("msg", "expected"),
    [
        (JobToken(job_id="j", text="t"), {"type": "job_token", "job_id": "j", "text": "t"}),
        (
            JobResult(job_id="j", content="c", tokens_used=2, finish_reason="stop"),
            {
                "type": "job_result",
                "job_id": "j",
                "content": "c",
                "tokens_used": 2,
                "finish_reason": "stop",
            },
        ),
        (
            JobRejected(job_id="j", reason="busy"),
            {"type": "job_rejected", "job_id": "j", "reason": "busy"},
        ),
        (
            ErrorMessage(code="timeout", message="slow"),
            {"type": "error", "code": "timeout", "message": "slow"},
        ),
        (
            ErrorMessage(code="internal", message="x", job_id="j"),
            {"type": "error", "job_id": "j", "code": "internal", "message": "x"},
        ),
        (StatusRequest(), {"type": "status_request"}),
        (Status(host=HOST), {"type": "status", "host": HOST_JSON}),
        (DiscoveryRequest(), {"type": "discovery_request", "limit": 20}),
        (
            DiscoveryRequest(models=("a", "b"), limit=5),
            {"type": "discovery_request", "models": ["a", "b"], "limit": 5},
        ),
        (
            DiscoveryResponse(peers=(PeerInfo(peer_id="p", addrs=("/a",), models=("m",)),)),
            {
                "type": "discovery_response",
                "peers": [{"peer_id": "p", "addrs": ["/a"], "models": ["m"]}],
            },
        ),
        (DiscoveryResponse(peers=()), {"type": "discovery_response", "peers": []}),
        (
            InferenceRequest(
                request_id="r1",
                model="m",
                prompt="hi",
                max_tokens=10,
                temperature=0.7,
                stream=False,
            ),
            INFERENCE_REQUEST_JSON,
        ),
        (
            InferenceResponse(
                request_id="r1",
                content="hello",
                tokens_used=3,
                model_used="m",
                finish_reason="stop",
            ),
            INFERENCE_RESPONSE_JSON,
        ),
    ],
)
def test_to_json_goldens(msg: Any, expected: dict[str, Any]) -> None:
    data = msg.to_json()
    assert data == expected
    assert list(data) == list(expected)  # key order too: `type` first
    assert type(msg).from_json(data) == msg


def test_host_optional_fields_are_omitted() -> None:
    host = Host(
        peer_id="p",
        addrs=(),
        models=(),
        reputation=0,
        uptime_s=0,
        active_jobs=0,
        max_jobs=0,
        version="",
    )
    assert "location" not in host.to_json()
    assert "api_url" not in host.to_json()
    assert Host.from_json(host.to_json()) == host


def test_messages_are_frozen_and_hashable() -> None:
    msg = JobToken(job_id="j", text="t")
    with pytest.raises(AttributeError):
        msg.text = "other"  # type: ignore[misc]
    assert hash(Status(host=HOST)) == hash(Status(host=HOST))


# ------------------------------------------------------------------ from_json


def test_job_request_from_peer_bytes() -> None:
    data = b'{"type":"job_request","job_id":"j","model":"m","prompt":"p","temperature":1}'
    msg = JobRequest.from_json(decode_json_object(data))
    assert msg == JobRequest(job_id="j", model="m", prompt="p", temperature=1.0)
    assert isinstance(msg.temperature, float)
    assert msg.stream is False


def test_null_optional_fields_count_as_absent() -> None:
    d = {"type": "job_request", "job_id": "j", "model": "m", "prompt": "p"}
    nulls = {"max_tokens": None, "temperature": None, "stream": None}
    assert JobRequest.from_json(d | nulls) == JobRequest.from_json(d)
    assert Host.from_json(HOST_JSON | {"location": None, "api_url": None}) == Host.from_json(
        {k: v for k, v in HOST_JSON.items() if k not in ("location", "api_url")}
    )
    assert ErrorMessage.from_json({"type": "error", "job_id": None, "code": "c", "message": ""})


def test_unknown_fields_are_ignored_at_every_level() -> None:
    host = HOST_JSON | {"gpu": "A100", "extra": {"nested": [1]}}
    status = {"type": "status", "host": host, "signature": "future"}
    assert Status.from_json(status) == Status(host=HOST)
    peers = {
        "type": "discovery_response",
        "peers": [{"peer_id": "p", "addrs": [], "models": [], "x": 1}],
    }
    assert DiscoveryResponse.from_json(peers).peers[0].peer_id == "p"
    inf = {"Inference": INFERENCE_REQUEST_JSON["Inference"] | {"top_p": 0.9}, "v": 2}
    assert InferenceRequest.from_json(inf).request_id == "r1"


def test_wrong_type_message_names_field_and_types() -> None:
    d = {"type": "job_request", "job_id": "j", "model": "m", "prompt": "p", "max_tokens": "5"}
    with bad_request("job_request.max_tokens", "expected integer, got string") as info:
        JobRequest.from_json(d)
    assert info.value.field == "job_request.max_tokens"
    assert info.value.reason == "expected integer, got string"


def test_bad_request_error_is_a_malformed_protocol_error() -> None:
    assert issubclass(BadRequestError, MalformedMessageError)
    assert issubclass(BadRequestError, ProtocolError)


@pytest.mark.parametrize("field", ["job_id", "model", "prompt"])
def test_job_request_missing_required_field(field: str) -> None:
    d = {"type": "job_request", "job_id": "j", "model": "m", "prompt": "p"}
    del d[field]
    with bad_request(f"job_request.{field}", "missing required field"):
        JobRequest.from_json(d)


def test_null_required_field_is_a_type_error() -> None:
    with bad_request("job_token.text", "expected string, got null"):
        JobToken.from_json({"type": "job_token", "job_id": "j", "text": None})


def test_type_must_match() -> None:
    with bad_request("job_request.type", 'expected "job_request", got "job_result"'):
        JobRequest.from_json({"type": "job_result", "job_id": "j", "model": "m", "prompt": "p"})
    with bad_request("status_request.type", "missing required field"):
        StatusRequest.from_json({})
    with bad_request("status_request.type", "expected string, got integer"):
        StatusRequest.from_json({"type": 1})


@pytest.mark.parametrize("value", [[], "x", 1, None, True])
def test_from_json_of_a_non_object(value: Any) -> None:
    with pytest.raises(BadRequestError, match=r"^status_request: expected object, got "):
        StatusRequest.from_json(value)
    with pytest.raises(BadRequestError, match=r"^status\.host: expected object, got "):
        Status.from_json({"type": "status", "host": value})


# (message class, valid JSON, integer fields, number fields, boolean fields)
INT_FIELDS: list[tuple[Any, dict[str, Any], str]] = [
    (JobRequest, {"type": "job_request", "job_id": "j", "model": "m", "prompt": "p"}, "max_tokens"),
    (
        JobResult,
        {"type": "job_result", "job_id": "j", "content": "", "finish_reason": "", "tokens_used": 1},
        "tokens_used",
    ),
    (DiscoveryRequest, {"type": "discovery_request"}, "limit"),
    *((Host, HOST_JSON, f) for f in ("reputation", "uptime_s", "active_jobs", "max_jobs")),
]


@pytest.mark.parametrize(("cls", "base", "field"), INT_FIELDS)
@pytest.mark.parametrize(
    ("value", "kind"),
    [(True, "boolean"), (False, "boolean"), (5.0, "number"), ("5", "string"), ([5], "array")],
)
def test_integer_fields_reject_other_types_including_bool(
    cls: Any, base: dict[str, Any], field: str, value: Any, kind: str
) -> None:
    prefix = "host" if cls is Host else base["type"]
    with bad_request(f"{prefix}.{field}", f"expected integer, got {kind}"):
        cls.from_json(base | {field: value})


@pytest.mark.parametrize(("cls", "base", "field"), INT_FIELDS)
def test_integer_fields_are_bounded(cls: Any, base: dict[str, Any], field: str) -> None:
    low = 1 if field == "limit" else 0
    for value in (low - 1, MAX_SAFE_INTEGER + 1, -(2**70)):
        with pytest.raises(BadRequestError, match=f"must be between {low} and "):
            cls.from_json(base | {field: value})
    cls.from_json(base | {field: low})


def test_inference_integer_fields() -> None:
    inner = INFERENCE_REQUEST_JSON["Inference"]
    with bad_request("inference_request.Inference.max_tokens", "expected integer, got boolean"):
        InferenceRequest.from_json({"Inference": inner | {"max_tokens": True}})
    with pytest.raises(BadRequestError, match="max_tokens: must be between 0"):
        InferenceRequest.from_json({"Inference": inner | {"max_tokens": -1}})
    resp = INFERENCE_RESPONSE_JSON["Inference"]
    with bad_request("inference_response.Inference.tokens_used", "expected integer, got number"):
        InferenceResponse.from_json({"Inference": resp | {"tokens_used": 3.0}})


@pytest.mark.parametrize(("value", "kind"), [(True, "boolean"), ("0.5", "string"), (None, "null")])
def test_number_fields_reject_bool_and_strings(value: Any, kind: str) -> None:
    inner = INFERENCE_REQUEST_JSON["Inference"]
    with bad_request("inference_request.Inference.temperature", f"expected number, got {kind}"):
        InferenceRequest.from_json({"Inference": inner | {"temperature": value}})
    base = {"type": "job_request", "job_id": "j", "model": "m", "prompt": "p"}
    if value is not None:  # null is "absent" for the optional field
        with bad_request("job_request.temperature", f"expected number, got {kind}"):
            JobRequest.from_json(base | {"temperature": value})


def test_number_fields_accept_integers_and_reject_non_finite() -> None:
    inner = INFERENCE_REQUEST_JSON["Inference"]
    msg = InferenceRequest.from_json({"Inference": inner | {"temperature": 1}})
    assert msg.temperature == 1.0
    assert isinstance(msg.temperature, float)
    for value in (math.nan, math.inf):  # not JSON, but from_json may get any mapping
        with pytest.raises(BadRequestError, match="finite"):
            InferenceRequest.from_json({"Inference": inner | {"temperature": value}})


@pytest.mark.parametrize(("value", "kind"), [(0, "integer"), (1, "integer"), ("true", "string")])
def test_boolean_fields_reject_integers_and_strings(value: Any, kind: str) -> None:
    base = {"type": "job_request", "job_id": "j", "model": "m", "prompt": "p"}
    with bad_request("job_request.stream", f"expected boolean, got {kind}"):
        JobRequest.from_json(base | {"stream": value})
    inner = INFERENCE_REQUEST_JSON["Inference"]
    with bad_request("inference_request.Inference.stream", f"expected boolean, got {kind}"):
        InferenceRequest.from_json({"Inference": inner | {"stream": value}})


@pytest.mark.parametrize("field", ["text", "job_id"])
def test_string_fields_reject_other_types(field: str) -> None:
    with bad_request(f"job_token.{field}", "expected string, got integer"):
        JobToken.from_json({"type": "job_token", "job_id": "j", "text": "t"} | {field: 1})


# ------------------------------------------------------------------ job_id bounds


@pytest.mark.parametrize("job_id", ["j", "x" * MAX_JOB_ID_LENGTH, "🚀" * MAX_JOB_ID_LENGTH])
def test_job_id_within_bounds(job_id: str) -> None:
    assert MAX_JOB_ID_LENGTH == 128
    assert JobToken.from_json({"type": "job_token", "job_id": job_id, "text": ""}).job_id == job_id


@pytest.mark.parametrize("cls", [JobRequest, JobToken, JobResult, JobRejected, ErrorMessage])
def test_job_id_bounds_apply_to_every_job_message(cls: Any) -> None:
    d = {
        "type": cls.TYPE,
        "model": "m",
        "prompt": "",
        "text": "",
        "content": "",
        "tokens_used": 0,
        "finish_reason": "",
        "reason": "",
        "code": "internal",
        "message": "",
    }
    with bad_request(f"{cls.TYPE}.job_id", "must not be empty"):
        cls.from_json(d | {"job_id": ""})
    with bad_request(f"{cls.TYPE}.job_id", "must be at most 128 characters, got 129"):
        cls.from_json(d | {"job_id": "x" * 129})
    assert cls.from_json(d | {"job_id": "x" * 128}).job_id == "x" * 128


def test_identifiers_must_not_be_empty() -> None:
    base = {"type": "job_request", "job_id": "j", "model": "m", "prompt": ""}
    with bad_request("job_request.model", "must not be empty"):
        JobRequest.from_json(base | {"model": ""})
    with bad_request("error.code", "must not be empty"):
        ErrorMessage.from_json({"type": "error", "code": "", "message": "m"})
    with bad_request("status.host.peer_id", "must not be empty"):
        Status.from_json({"type": "status", "host": HOST_JSON | {"peer_id": ""}})
    with bad_request("host.api_url", "must not be empty"):
        Host.from_json(HOST_JSON | {"api_url": ""})
    with bad_request("inference_request.Inference.request_id", "must not be empty"):
        InferenceRequest.from_json(
            {"Inference": INFERENCE_REQUEST_JSON["Inference"] | {"request_id": ""}}
        )


# ------------------------------------------------------------------ job responses


def test_error_codes() -> None:
    assert (
        codes.ERROR_BAD_REQUEST,
        codes.ERROR_TOO_LARGE,
        codes.ERROR_INTERNAL,
        codes.ERROR_TIMEOUT,
        codes.ERROR_BUSY,
    ) == (
        "bad_request",
        "too_large",
        "internal",
        "timeout",
        "busy",
    )
    assert (
        frozenset({"bad_request", "too_large", "internal", "timeout", "busy"}) == codes.ERROR_CODES
    )
    assert frozenset({"model_not_served", "busy", "shutting_down"}) == codes.REJECTED_CODES


def test_unknown_error_code_is_accepted() -> None:
    msg = ErrorMessage.from_json({"type": "error", "code": "quota_exceeded", "message": "later"})
    assert msg == ErrorMessage(code="quota_exceeded", message="later")


@pytest.mark.parametrize(
    "msg",
    [
        JobToken(job_id="j", text="t"),
        JobResult(job_id="j", content="c", tokens_used=1, finish_reason="length"),
        JobRejected(job_id="j", reason="model not served"),
        ErrorMessage(code="bad_request", message="m", job_id="j"),
        ErrorMessage(code="too_large", message="m"),
    ],
)
def test_parse_job_response_dispatches_on_type(msg: Any) -> None:
    assert parse_job_response(decode_json_object(encode_json(msg.to_json()))) == msg


def test_parse_job_response_errors() -> None:
    with pytest.raises(
        BadRequestError, match=r'^job_response\.type: expected one of .*"job_request"$'
    ):
        parse_job_response({"type": "job_request"})
    with bad_request("job_response.type", "missing required field"):
        parse_job_response({"job_id": "j"})
    with bad_request("job_response", "expected object, got array"):
        parse_job_response([])  # type: ignore[arg-type]
    with bad_request("job_result.tokens_used", "missing required field"):
        parse_job_response(
            {"type": "job_result", "job_id": "j", "content": "", "finish_reason": ""}
        )


# ------------------------------------------------------------------ status / HOST


@pytest.mark.parametrize(("raw", "normalised"), [("us", "US"), ("De", "DE"), ("GB", "GB")])
def test_location_is_normalised_to_upper_case(raw: str, normalised: str) -> None:
    assert Host.from_json(HOST_JSON | {"location": raw}).location == normalised


@pytest.mark.parametrize("raw", ["", "U", "USA", "U1", "ÜS", "u-", "  "])
def test_location_must_be_two_ascii_letters(raw: str) -> None:
    with pytest.raises(BadRequestError, match=r"^status\.host\.location: expected an ISO 3166-1"):
        Status.from_json({"type": "status", "host": HOST_JSON | {"location": raw}})


@pytest.mark.parametrize(
    "field",
    ["peer_id", "addrs", "models", "reputation", "uptime_s", "active_jobs", "max_jobs", "version"],
)
def test_host_required_fields(field: str) -> None:
    host = {k: v for k, v in HOST_JSON.items() if k != field}
    with bad_request(f"status.host.{field}", "missing required field"):
        Status.from_json({"type": "status", "host": host})


def test_host_lists_hold_non_empty_strings() -> None:
    with bad_request("host.addrs", "expected array, got string"):
        Host.from_json(HOST_JSON | {"addrs": "/ip4/1.2.3.4"})
    with bad_request("host.models[1]", "expected string, got integer"):
        Host.from_json(HOST_JSON | {"models": ["a", 2]})
    with bad_request("host.addrs[0]", "must not be empty"):
        Host.from_json(HOST_JSON | {"addrs": [""]})


def test_status_missing_host() -> None:
    with bad_request("status.host", "missing required field"):
        Status.from_json({"type": "status"})


# ------------------------------------------------------------------ discovery


@pytest.mark.parametrize(
    ("limit", "expected"),
    [(None, DEFAULT_DISCOVERY_LIMIT), (1, 1), (100, 100), (101, MAX_DISCOVERY_LIMIT), (10**6, 100)],
)
def test_discovery_limit_default_and_clamp(limit: int | None, expected: int) -> None:
    assert (DEFAULT_DISCOVERY_LIMIT, MAX_DISCOVERY_LIMIT) == (20, 100)
    d: dict[str, Any] = {"type": "discovery_request"}
    if limit is not None:
        d["limit"] = limit
    assert DiscoveryRequest.from_json(d).limit == expected


def test_discovery_models_absent_empty_and_invalid() -> None:
    assert DiscoveryRequest.from_json({"type": "discovery_request"}).models is None
    assert DiscoveryRequest.from_json({"type": "discovery_request", "models": []}).models == ()
    with bad_request("discovery_request.models[0]", "expected string, got null"):
        DiscoveryRequest.from_json({"type": "discovery_request", "models": [None]})


def test_discovery_response_paths_name_the_peer() -> None:
    peers = [{"peer_id": "a", "addrs": [], "models": []}, {"peer_id": "b", "addrs": [3]}]
    with bad_request("discovery_response.peers[1].addrs[0]", "expected string, got integer"):
        DiscoveryResponse.from_json({"type": "discovery_response", "peers": peers})
    with bad_request("discovery_response.peers[0]", "expected object, got string"):
        DiscoveryResponse.from_json({"type": "discovery_response", "peers": ["a"]})
    with bad_request("discovery_response.peers", "missing required field"):
        DiscoveryResponse.from_json({"type": "discovery_response"})
    assert PeerInfo.from_json({"peer_id": "p", "addrs": [], "models": []}).peer_id == "p"


# ------------------------------------------------------------------ inference


def test_inference_tag_is_required() -> None:
    with bad_request("inference_request.Inference", "missing required field"):
        InferenceRequest.from_json({"type": "job_request"})
    with bad_request("inference_response.Inference", "expected object, got array"):
        InferenceResponse.from_json({"Inference": []})


@pytest.mark.parametrize("field", list(INFERENCE_REQUEST_JSON["Inference"]))
def test_inference_request_fields_are_all_required(field: str) -> None:
    inner = {k: v for k, v in INFERENCE_REQUEST_JSON["Inference"].items() if k != field}
    with bad_request(f"inference_request.Inference.{field}", "missing required field"):
        InferenceRequest.from_json({"Inference": inner})


@pytest.mark.parametrize("field", list(INFERENCE_RESPONSE_JSON["Inference"]))
def test_inference_response_fields_are_all_required(field: str) -> None:
    inner = {k: v for k, v in INFERENCE_RESPONSE_JSON["Inference"].items() if k != field}
    with bad_request(f"inference_response.Inference.{field}", "missing required field"):
        InferenceResponse.from_json({"Inference": inner})


def test_inference_from_rust_node_bytes() -> None:
    data = (
        b'{"Inference":{"request_id":"abc","content":"Hi","tokens_used":2,'
        b'"model_used":"llama","finish_reason":"stop"}}'
    )
    assert InferenceResponse.from_json(decode_json_object(data)) == InferenceResponse(
        request_id="abc", content="Hi", tokens_used=2, model_used="llama", finish_reason="stop"
    )


# ------------------------------------------------------------------ PROTOCOL.md 3.1 additions


CHAT = (ChatMessage(role="system", content=""), ChatMessage(role="user", content="hi"))


def test_job_request_messages_round_trip_after_the_other_fields() -> None:
    msg = JobRequest(job_id="j", model="m", prompt="p", messages=CHAT)
    data = msg.to_json()
    assert list(data) == ["type", "job_id", "model", "prompt", "stream", "messages"]
    assert data["messages"] == [
        {"role": "system", "content": ""},
        {"role": "user", "content": "hi"},
    ]
    assert JobRequest.from_json(decode_json_object(encode_json(data))) == msg
    assert "messages" not in JobRequest(job_id="j", model="m", prompt="p").to_json()


def test_job_request_messages_are_validated() -> None:
    base = {"type": "job_request", "job_id": "j", "model": "m", "prompt": "p"}
    assert JobRequest.from_json(base | {"messages": None}).messages is None
    assert JobRequest.from_json(base | {"messages": []}).messages == ()
    with bad_request("job_request.messages", "expected array, got object"):
        JobRequest.from_json(base | {"messages": {"role": "user"}})
    with bad_request("job_request.messages[0]", "expected object, got string"):
        JobRequest.from_json(base | {"messages": ["hi"]})
    with bad_request("job_request.messages[1].content", "missing required field"):
        JobRequest.from_json(base | {"messages": [{"role": "a", "content": ""}, {"role": "u"}]})
    with bad_request("job_request.messages[0].role", "must not be empty"):
        JobRequest.from_json(base | {"messages": [{"role": "", "content": "x"}]})
    with bad_request("job_request.messages[0].content", "expected string, got integer"):
        JobRequest.from_json(base | {"messages": [{"role": "user", "content": 1}]})
    unknown = {"role": "user", "content": "x", "name": "bob"}
    assert JobRequest.from_json(base | {"messages": [unknown]}).messages == (
        ChatMessage(role="user", content="x"),
    )


def test_job_rejected_code_and_retry_after() -> None:
    msg = JobRejected(job_id="j", reason="busy", code=codes.REJECTED_BUSY, retry_after_ms=250)
    data = msg.to_json()
    assert data == {
        "type": "job_rejected",
        "job_id": "j",
        "reason": "busy",
        "code": "busy",
        "retry_after_ms": 250,
    }
    assert list(data) == ["type", "job_id", "reason", "code", "retry_after_ms"]
    assert parse_job_response(data) == msg
    base = {"type": "job_rejected", "job_id": "j", "reason": ""}
    assert JobRejected.from_json(base | {"code": "later_maybe"}).code == "later_maybe"
    with bad_request("job_rejected.code", "must not be empty"):
        JobRejected.from_json(base | {"code": ""})
    with bad_request(
        "job_rejected.retry_after_ms", f"must be between 0 and {MAX_SAFE_INTEGER}, got -1"
    ):
        JobRejected.from_json(base | {"retry_after_ms": -1})
    with bad_request("job_rejected.retry_after_ms", "expected integer, got number"):
        JobRejected.from_json(base | {"retry_after_ms": 1.5})


def test_error_retry_after() -> None:
    msg = ErrorMessage(code=codes.ERROR_BUSY, message="full", job_id="j", retry_after_ms=0)
    assert msg.to_json() == {
        "type": "error",
        "job_id": "j",
        "code": "busy",
        "message": "full",
        "retry_after_ms": 0,
    }
    assert parse_job_response(msg.to_json()) == msg
    with bad_request("error.retry_after_ms", "expected integer, got boolean"):
        ErrorMessage.from_json(
            {"type": "error", "code": "busy", "message": "", "retry_after_ms": True}
        )


# ------------------------------------------------------------------ properties

text = st.text(alphabet=st.characters(codec="utf-8"), max_size=30)
ident = st.text(alphabet=st.characters(codec="utf-8"), min_size=1, max_size=30)
job_ids = st.text(alphabet=st.characters(codec="utf-8"), min_size=1, max_size=MAX_JOB_ID_LENGTH)
counts = st.integers(min_value=0, max_value=MAX_SAFE_INTEGER)
floats = st.floats(allow_nan=False, allow_infinity=False)
idents = st.lists(ident, max_size=4).map(tuple)
country = st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZ", min_size=2, max_size=2)

hosts = st.builds(
    Host,
    peer_id=ident,
    addrs=idents,
    models=idents,
    reputation=counts,
    uptime_s=counts,
    active_jobs=counts,
    max_jobs=counts,
    version=text,
    location=st.none() | country,
    api_url=st.none() | ident,
)
job_responses = st.one_of(
    st.builds(JobToken, job_id=job_ids, text=text),
    st.builds(JobResult, job_id=job_ids, content=text, tokens_used=counts, finish_reason=text),
    *(
        st.builds(cls, retry_after_ms=st.none() | counts, **fields)
        for cls, fields in (
            (JobRejected, {"job_id": job_ids, "reason": text, "code": st.none() | ident}),
            (ErrorMessage, {"job_id": st.none() | job_ids, "message": text, "code": ident}),
        )
    ),
)
messages = st.one_of(
    st.builds(
        JobRequest,
        job_id=job_ids,
        model=ident,
        prompt=text,
        max_tokens=st.none() | counts,
        temperature=st.none() | floats,
        stream=st.booleans(),
        messages=st.none()
        | st.lists(st.builds(ChatMessage, role=ident, content=text), max_size=3).map(tuple),
    ),
    job_responses,
    st.just(StatusRequest()),
    st.builds(Status, host=hosts),
    st.builds(
        DiscoveryRequest,
        models=st.none() | idents,
        limit=st.integers(min_value=1, max_value=MAX_DISCOVERY_LIMIT),
    ),
    st.builds(
        DiscoveryResponse,
        peers=st.lists(
            st.builds(PeerInfo, peer_id=ident, addrs=idents, models=idents), max_size=3
        ).map(tuple),
    ),
    st.builds(
        InferenceRequest,
        request_id=ident,
        model=ident,
        prompt=text,
        max_tokens=counts,
        temperature=floats,
        stream=st.booleans(),
    ),
    st.builds(
        InferenceResponse,
        request_id=ident,
        content=text,
        tokens_used=counts,
        model_used=text,
        finish_reason=text,
    ),
)
json_scalars = st.none() | st.booleans() | st.integers() | floats | text


@given(messages)
def test_every_message_round_trips_through_bytes(msg: Any) -> None:
    assert type(msg).from_json(decode_json_object(encode_json(msg.to_json()))) == msg


@given(job_responses)
def test_every_job_response_round_trips_through_dispatch(msg: Any) -> None:
    assert parse_job_response(decode_json_object(encode_json(msg.to_json()))) == msg


@given(messages, st.dictionaries(text.map(lambda s: "x_" + s), json_scalars, max_size=4))
def test_unknown_top_level_fields_never_change_the_result(msg: Any, extra: dict[str, Any]) -> None:
    assert type(msg).from_json(extra | msg.to_json()) == msg


@given(
    st.sampled_from(
        [
            JobRequest,
            JobToken,
            JobResult,
            JobRejected,
            ErrorMessage,
            Status,
            DiscoveryRequest,
            DiscoveryResponse,
            InferenceRequest,
            InferenceResponse,
            StatusRequest,
        ]
    ),
    st.dictionaries(
        st.sampled_from(
            [
                "type",
                "job_id",
                "model",
                "prompt",
                "limit",
                "models",
                "peers",
                "host",
                "Inference",
                "code",
                "message",
                "messages",
                "retry_after_ms",
            ]
        ),
        json_scalars | st.lists(json_scalars, max_size=2),
        max_size=6,
    ),
)
def test_arbitrary_objects_parse_or_raise_bad_request(cls: Any, d: dict[str, Any]) -> None:
    try:
        cls.from_json(d)
    except BadRequestError as exc:
        assert str(exc).startswith(exc.field)
