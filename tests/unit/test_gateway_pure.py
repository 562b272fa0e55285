"""Pure parts of the gateway: criteria, explanation, chat parsing and rendering, helpers."""

from __future__ import annotations

import json
from typing import Any

import pytest

from fabstir_sidecar import ConfigError, HostStatus
from fabstir_sidecar.client import JOB_DURATION_BUCKETS, ClientStats
from fabstir_sidecar.gateway.chat import ChatIds, parse_chat, parse_inference, render_prompt
from fabstir_sidecar.gateway.criteria import explain, no_match, parse_query, parse_selection
from fabstir_sidecar.gateway.errors import ApiError
from fabstir_sidecar.gateway.middleware import token_ok
from fabstir_sidecar.gateway.server import is_loopback, parse_http_addr
from fabstir_sidecar.gateway.settings import GatewaySettings
from fabstir_sidecar.wire.messages import BadRequestError, ChatMessage, Host, JobRequest

PEER = "12D3KooWJWoaqZhDaoEFshF7Rh1bpY9ohihFhzcW6d69Lr2NASuq"
OTHER = "12D3KooWP5BeyA1MUGxoYucZ4nwk1kUC5EzkFh3UFsGWjaW32YPK"


def status(peer: str = PEER, latency: float = 5.0, **fields: Any) -> HostStatus:
    values: dict[str, Any] = {
        "peer_id": peer, "addrs": (), "models": ("m1",), "reputation": 50, "uptime_s": 100,
        "location": "US", "active_jobs": 0, "max_jobs": 4, "version": "1",
    }  # fmt: skip
    values.update(fields)
    return HostStatus(host=Host(**values), latency_ms=latency)


def code_of(exc: pytest.ExceptionInfo[ApiError]) -> tuple[int, str]:
    return exc.value.status, exc.value.code


# ------------------------------------------------------------------ criteria


def test_headers_and_body_combine_and_the_body_wins() -> None:
    headers = {"x-fabstir-min-reputation": "10", "x-fabstir-location": "de"}
    selection = parse_selection(headers, {"min_reputation": 70, "max_latency_ms": 2.5}, ("m",))
    assert selection.min_reputation == 70 and selection.location == "DE"
    assert selection.max_latency_ms == 2.5 and selection.models == ("m",)
    assert parse_selection({"x-fabstir-peer-id": PEER}).peer_id == PEER


@pytest.mark.parametrize(
    ("headers", "body"),
    [
        ({"x-fabstir-min-reputation": "x"}, None),
        ({"x-fabstir-min-reputation": "-1"}, None),
        ({"x-fabstir-max-latency-ms": "nan"}, None),
        ({}, {"min_uptime_s": 1.5}),
        ({}, {"min_reputation": True}),
        ({}, {"location": "USA"}),
        ({}, {"peer_id": "not a peer"}),
        ({}, [1]),
    ],
)
def test_a_criterion_that_does_not_parse_is_invalid_criteria(headers: Any, body: Any) -> None:
    with pytest.raises(ApiError) as caught:
        parse_selection(headers, body)
    assert code_of(caught) == (400, "invalid_criteria")


def test_explanation_counts_a_host_under_every_criterion_it_fails() -> None:
    selection = parse_selection({}, {"min_reputation": 60, "location": "DE"}, ("m2",))
    answers = [status(reputation=10), status(OTHER, models=("m2",), location="DE")]
    explanation = explain(selection, answers, hosts_seen=4)
    assert explanation == {
        "hosts_seen": 4,
        "excluded": {"model": 1, "min_reputation": 2, "max_latency_ms": 0, "min_uptime_s": 0,
                     "location": 1, "peer_id": 0, "unreachable": 2},
    }  # fmt: skip
    err = no_match(selection, explanation)
    assert (err.status, err.code) == (404, "model_not_found")
    body = err.error_object()
    assert body["fabstir"] == explanation and body["type"] == "invalid_request_error"
    assert "4 hosts seen" in err.message and "2 did not answer" in err.message
    assert "1 do not serve the model" in err.message
    assert no_match(parse_selection({}), explanation).code == "no_matching_host"


def test_query_of_hosts() -> None:
    selection, limit = parse_query(
        [("model", "a"), ("model", "b"), ("limit", "5"), ("location", "us")]
    )
    assert selection.models == ("a", "b") and limit == 5 and selection.location == "US"
    assert parse_query([])[1] == 20
    for bad in ("0", "101", "x", "-1"):
        with pytest.raises(ApiError) as caught:
            parse_query([("limit", bad)])
        assert code_of(caught) == (400, "invalid_field")


# ------------------------------------------------------------------ chat


def test_prompt_rendering_and_parts() -> None:
    spec = parse_chat(
        {
            "model": "m",
            "messages": [
                {"role": "system", "content": "S"},
                {
                    "role": "user",
                    "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}],
                },
            ],
            "max_tokens": 9,
            "max_completion_tokens": 3,
            "temperature": 1,
            "stream": True,
            "unknown": "ignored",
        }
    )
    assert spec.prompt == "system: S\nuser: ab\nassistant:"
    assert spec.messages == (ChatMessage("system", "S"), ChatMessage("user", "ab"))
    assert (spec.max_tokens, spec.temperature, spec.stream) == (3, 1.0, True)
    assert parse_chat({"model": "m", "messages": [{"role": "u", "content": ""}]}).max_tokens is None
    assert render_prompt((ChatMessage("user", "x"),)) == "user: x\nassistant:"


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"messages": [{"role": "user", "content": "x"}]}, "missing_field"),
        ({"model": "m"}, "missing_field"),
        ({"model": "m", "messages": []}, "invalid_field"),
        ({"model": "m", "messages": [{"content": "x"}]}, "missing_field"),
        ({"model": "m", "messages": [{"role": "user"}]}, "missing_field"),
        ({"model": "m", "messages": [{"role": "user", "content": 5}]}, "invalid_field"),
        (
            {"model": "m", "messages": [{"role": "user", "content": [{"type": "image_url"}]}]},
            "invalid_field",
        ),
        ({"model": 1, "messages": [{"role": "user", "content": "x"}]}, "invalid_field"),
        (
            {"model": "m", "messages": [{"role": "u", "content": "x"}], "stream": "yes"},
            "invalid_field",
        ),
        (
            {"model": "m", "messages": [{"role": "u", "content": "x"}], "max_tokens": 1.5},
            "invalid_field",
        ),
        (
            {"model": "m", "messages": [{"role": "u", "content": "x"}], "temperature": "hot"},
            "invalid_field",
        ),
    ],
)
def test_bad_chat_requests(body: dict[str, Any], code: str) -> None:
    with pytest.raises(ApiError) as caught:
        parse_chat(body)
    assert code_of(caught) == (400, code)


def test_inference_requests() -> None:
    spec = parse_inference({"model": "m", "prompt": "p", "max_tokens": 4})
    assert spec.request_id and spec.max_tokens == 4 and spec.messages is None
    assert (
        parse_inference({"model": "m", "prompt": "", "max_tokens": 1, "request_id": "r"}).request_id
        == "r"
    )
    for body in ({"model": "m", "prompt": "p"}, {"model": "m", "max_tokens": 1}):
        with pytest.raises(ApiError) as caught:
            parse_inference(body)
        assert code_of(caught) == (400, "missing_field")


def test_chunks_share_id_created_and_model() -> None:
    ids = ChatIds('model "quoted"')
    first = json.loads(ids.chunk('a\n"b', first=True).removeprefix(b"data: "))
    later = json.loads(ids.chunk("c").removeprefix(b"data: "))
    last = json.loads(ids.last_chunk("length").removeprefix(b"data: "))
    for chunk in (first, later, last):
        assert (chunk["id"], chunk["created"], chunk["model"]) == (ids.id, ids.created, ids.model)
        assert chunk["object"] == "chat.completion.chunk"
    assert first["choices"][0]["delta"] == {"role": "assistant", "content": 'a\n"b'}
    assert later["choices"][0] == {"index": 0, "delta": {"content": "c"}, "finish_reason": None}
    assert last["choices"][0] == {"index": 0, "delta": {}, "finish_reason": "length"}
    done = ids.completion("hi", "stop", "user: x\nassistant:", 2)
    assert done["usage"]["total_tokens"] == done["usage"]["prompt_tokens"] + 2


# ------------------------------------------------------------------ helpers, wire, stats


def test_bearer_token_check() -> None:
    assert token_ok("t", b"Bearer t") and token_ok("t", b"bearer  t")
    assert not token_ok("t", None) and not token_ok("t", b"Bearer u") and not token_ok("t", b"t")
    assert not token_ok("t", b"Basic t")


def test_http_addresses() -> None:
    assert parse_http_addr("127.0.0.1:0") == ("127.0.0.1", 0)
    assert parse_http_addr("[::1]:8080") == ("::1", 8080)
    for bad in ("localhost", ":80", "h:99999", "h:x"):
        with pytest.raises(ConfigError):
            parse_http_addr(bad)
    assert is_loopback("127.0.0.1") and is_loopback("::1") and not is_loopback("0.0.0.0")


def test_settings_are_validated() -> None:
    with pytest.raises(ConfigError):
        GatewaySettings(token="")
    with pytest.raises(ConfigError):
        GatewaySettings(job_timeout=0)
    with pytest.raises(ConfigError):
        GatewaySettings(sse_buffer=0)


def test_job_request_messages_round_trip_and_validation() -> None:
    chat = (ChatMessage("user", "hi"), ChatMessage("assistant", ""))
    request = JobRequest(job_id="j", model="m", prompt="p", messages=chat)
    wire = request.to_json()
    assert wire["messages"] == [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": ""},
    ]
    assert JobRequest.from_json(wire) == request
    plain = JobRequest(job_id="j", model="m", prompt="p").to_json()
    assert "messages" not in plain and JobRequest.from_json(plain).messages is None
    assert JobRequest.from_json({**plain, "messages": None}).messages is None
    for bad, field in (
        ("x", "job_request.messages"),
        ([1], "job_request.messages[0]"),
        ([{"role": "", "content": "x"}], "job_request.messages[0].role"),
        ([{"role": "user"}], "job_request.messages[0].content"),
        ([{"role": "user", "content": 1}], "job_request.messages[0].content"),
    ):
        with pytest.raises(BadRequestError) as caught:
            JobRequest.from_json({**plain, "messages": bad})
        assert caught.value.field == field


def test_client_stats_buckets() -> None:
    stats = ClientStats()
    stats.record("result", 0.001)
    stats.record("result", 0.005)  # on a bound: counted in that bucket (le)
    stats.record("error", 10_000)
    assert stats.jobs == {"result": 2, "error": 1}
    assert stats.duration_counts[0] == 2 and stats.duration_counts[len(JOB_DURATION_BUCKETS)] == 1
    assert stats.duration_sum == pytest.approx(10_000.006)
