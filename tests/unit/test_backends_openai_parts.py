"""Unit tests of the OpenAI backend's parts: chat semantics and SSE parsing (no network)."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from typing import NoReturn

import anyio
import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from fabstir_sidecar.backend import Completion
from fabstir_sidecar.host.backends import openai_chat
from fabstir_sidecar.host.backends.sse import sse_events
from fabstir_sidecar.wire.messages import ChatMessage, JobRequest

# ------------------------------------------------------------------ openai_chat


def test_request_body_sends_the_prompt_as_one_user_message() -> None:
    for messages in (None, ()):
        request = JobRequest(job_id="j", model="m", prompt="hi", max_tokens=3, messages=messages)
        assert openai_chat.request_body(request, model="local", stream=True) == {
            "model": "local",
            "messages": [{"role": "user", "content": "hi"}],
            "stream": True,
            "max_tokens": 3,
        }


def test_request_body_sends_the_chat_when_the_job_has_one() -> None:
    chat = (ChatMessage(role="system", content="be brief"), ChatMessage(role="user", content="x"))
    request = JobRequest(job_id="j", model="m", prompt="rendered", temperature=0.0, messages=chat)
    assert openai_chat.request_body(request, model="m", stream=False) == {
        "model": "m",
        "messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "x"}],
        "stream": False,
        "temperature": 0.0,
    }


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ({"error": {"message": "nope"}}, "nope"),
        ({"error": "plain"}, "plain"),
        ({"error": {"code": 1}}, '{"code": 1}'),
        ({"choices": []}, None),
        ([], None),
    ],
)
def test_error_message(payload: object, message: str | None) -> None:
    assert openai_chat.error_message(payload) == message


def test_parse_completion() -> None:
    payload = {
        "choices": [{"message": {"content": "a b c"}, "finish_reason": "length"}],
        "usage": {"completion_tokens": 7},
    }
    assert openai_chat.parse_completion(payload) == Completion("a b c", 7, "length")
    no_usage = {"choices": [{"message": {"content": None}}], "usage": {"completion_tokens": True}}
    assert openai_chat.parse_completion(no_usage) == Completion("", 0, "stop")
    for bad in ({}, {"choices": [{}]}, {"choices": [{"message": {"content": 1}}]}):
        with pytest.raises(openai_chat.BadResponse):
            openai_chat.parse_completion(bad)


def test_apply_chunk_tracks_the_stream() -> None:
    state = openai_chat.StreamState()
    chunk = {"choices": [{"delta": {"role": "assistant", "content": ""}}]}
    assert openai_chat.apply_chunk(chunk, state) is None
    assert openai_chat.apply_chunk({"choices": [{"delta": {"content": "hi"}}]}, state) == "hi"
    assert not state.complete
    assert (
        openai_chat.apply_chunk({"choices": [{"delta": {}, "finish_reason": "stop"}]}, state)
        is None
    )
    assert state.complete
    assert state.end() == (1, "stop")
    assert (
        openai_chat.apply_chunk({"choices": [], "usage": {"completion_tokens": 9}}, state) is None
    )
    assert state.end() == (9, "stop")
    for bad in (
        {"choices": ["x"]},
        {"choices": [{"delta": 1}]},
        {"choices": [{"delta": {"content": 2}}]},
    ):
        with pytest.raises(openai_chat.BadResponse):
            openai_chat.apply_chunk(bad, openai_chat.StreamState())


# ------------------------------------------------------------------ sse


class TooLarge(Exception):
    pass


def too_large(limit: int) -> NoReturn:
    raise TooLarge(limit)


class Chunks(httpx.AsyncByteStream):
    def __init__(self, chunks: list[bytes]) -> None:
        self.chunks = chunks

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for chunk in self.chunks:
            yield chunk


async def events_of(chunks: list[bytes], max_bytes: int = 1 << 20) -> list[tuple[str, str]]:
    response = httpx.Response(200, headers={"Content-Type": "text/plain"}, stream=Chunks(chunks))
    return [
        (e.event, e.data)
        async for e in sse_events(response, max_bytes=max_bytes, too_large=too_large)
    ]


@pytest.mark.anyio
async def test_sse_events_and_an_unterminated_last_event() -> None:
    data = b': keep-alive\n\nevent: error\ndata: {"a":\ndata: 1}\n\ndata: [DONE]'
    assert await events_of([data]) == [("error", '{"a":\n1}'), ("message", "[DONE]")]


@pytest.mark.anyio
async def test_sse_body_is_capped_as_it_arrives() -> None:
    with pytest.raises(TooLarge):
        await events_of([b"data: " + b"x" * 100, b"x" * 100], max_bytes=150)
    assert await events_of([b"data: x\n\n"], max_bytes=9) == [("message", "x")]


events = st.lists(st.text(alphabet=st.characters(codec="utf-8", exclude_characters="\r\n")))


@given(events, st.booleans(), st.lists(st.integers(min_value=0)))
def test_sse_parsing_is_independent_of_chunking(
    datas: list[str], crlf: bool, cuts: list[int]
) -> None:
    end = "\r\n" if crlf else "\n"
    body = "".join(f"data: {d}{end}{end}" for d in datas).encode()
    points = sorted({0, len(body), *(c % (len(body) + 1) for c in cuts)})
    chunks = [body[a:b] for a, b in itertools.pairwise(points)]
    assert anyio.run(events_of, chunks) == [("message", d) for d in datas]
