"""OpenAIBackend against a real (fake) OpenAI-compatible HTTP server on 127.0.0.1.

The server is the standard library's ThreadingHTTPServer in a background thread; each test
picks its behaviour (``FakeOpenAI.mode``) and inspects the requests it recorded.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from fabstir_sidecar.host.backends import BackendError, Completion, OpenAIBackend
from fabstir_sidecar.wire.messages import ChatMessage, JobRequest
from tests.integration.fake_http import FakeServer, QuietHandler, serve_fake

pytestmark = [pytest.mark.integration, pytest.mark.anyio]

TOKENS = ["Hel", "lo", ",", " wörld", " 🙂", "!"]


@dataclass
class Recorded:
    path: str
    headers: dict[str, str]
    body: dict[str, Any]


@dataclass
class FakeOpenAI:
    """Behaviour and recordings of the fake server (set attributes before a request)."""

    port: int
    mode: str = "ok"
    tokens: list[str] = field(default_factory=lambda: list(TOKENS))
    finish_reason: str = "stop"
    usage: int | None = 11  # completion_tokens reported, None: no usage object
    chunked: bool = True  # streamed responses: chunked, else close-delimited
    big_size: int = 0
    requests: list[Recorded] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"


class Handler(QuietHandler):
    server: FakeServer[FakeOpenAI]
    timeout = 10  # idle keep-alive connections end on their own

    # -------------------------------------------------------------- plumbing

    def start_events(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        if self.server.fake.chunked:
            self.send_header("Transfer-Encoding", "chunked")
        else:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()

    def write(self, data: bytes) -> None:
        if self.server.fake.chunked:
            data = f"{len(data):x}\r\n".encode() + data + b"\r\n"
        self.wfile.write(data)
        self.wfile.flush()

    def event(self, payload: object) -> None:
        text = payload if isinstance(payload, str) else json.dumps(payload)
        self.write(f"data: {text}\n\n".encode())

    def end_events(self, *, done: bool = True) -> None:
        if done:
            self.event("[DONE]")
        if self.server.fake.chunked:
            self.wfile.write(b"0\r\n\r\n")

    def chunk(self, delta: dict[str, Any], finish_reason: str | None = None) -> dict[str, Any]:
        return {
            "id": "chatcmpl-1",
            "object": "chat.completion.chunk",
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}],
        }

    def abort(self) -> None:
        """Drop the connection without finishing the response."""
        self.close_connection = True
        self.wfile.flush()
        self.connection.shutdown(socket.SHUT_RDWR)

    # -------------------------------------------------------------- requests

    def do_POST(self) -> None:
        fake = self.server.fake
        raw = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        body = json.loads(raw)
        fake.requests.append(
            Recorded(self.path, {k.lower(): v for k, v in self.headers.items()}, body)
        )
        if self.path != "/v1/chat/completions":
            self.send_body(404, b'{"error": {"message": "no such path"}}')
            return
        stream = bool(body.get("stream"))
        mode = fake.mode

        if mode == "error500":
            error = {"error": {"message": "model 'nope' is not loaded", "type": "server_error"}}
            self.send_body(500, json.dumps(error).encode())
        elif mode == "invalid_json":
            if stream:
                self.start_events()
                self.event(self.chunk({"content": "ok"}))
                self.write(b"data: {this is not json\n\n")
                self.end_events()
            else:
                self.send_body(200, b'{"choices": [this is not json')
        elif mode == "missing_fields":
            self.send_body(200, b'{"choices": [{"index": 0, "finish_reason": "stop"}]}')
        elif mode == "stall":
            fake.stop.wait(10)
            self.abort()
        elif mode == "stall_stream":
            self.start_events()
            self.event(self.chunk({"role": "assistant", "content": fake.tokens[0]}))
            fake.stop.wait(10)
            self.abort()
        elif mode == "truncated":
            self.start_events()
            for token in fake.tokens[:2]:
                self.event(self.chunk({"content": token}))
            self.abort()
        elif mode == "eof_after_finish":
            self.start_events()
            for token in fake.tokens:
                self.event(self.chunk({"content": token}))
            self.event(self.chunk({}, fake.finish_reason))
            self.end_events(done=False)
        elif mode == "stream_error":
            self.start_events()
            self.event(self.chunk({"content": "partial"}))
            self.event({"error": {"message": "CUDA out of memory", "code": 500}})
            self.end_events()
        elif mode == "json_for_stream":
            self.reply_json(fake)
        elif mode == "big":
            text = "x" * fake.big_size
            if stream:
                self.start_events()
                for i in range(0, len(text), 1000):
                    self.event(self.chunk({"content": text[i : i + 1000]}))
                self.end_events()
            else:
                self.send_body(200, json.dumps(self.completion(text, fake)).encode())
        elif stream:
            self.reply_events(fake)
        else:
            self.reply_json(fake)

    def completion(self, text: str, fake: FakeOpenAI) -> dict[str, Any]:
        result: dict[str, Any] = {
            "id": "chatcmpl-1",
            "object": "chat.completion",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": text},
                    "finish_reason": fake.finish_reason,
                }
            ],
        }
        if fake.usage is not None:
            result["usage"] = {"prompt_tokens": 5, "completion_tokens": fake.usage}
        return result

    def reply_json(self, fake: FakeOpenAI) -> None:
        self.send_body(200, json.dumps(self.completion("".join(fake.tokens), fake)).encode())

    def reply_events(self, fake: FakeOpenAI) -> None:
        self.start_events()
        self.write(b": keep-alive comment\n\n")
        self.event(self.chunk({"role": "assistant", "content": ""}))  # role-only
        for token in fake.tokens:
            self.event(self.chunk({"content": token}))
        self.event(self.chunk({}, fake.finish_reason))
        if fake.usage is not None:  # OpenAI's include_usage style: a chunk without choices
            self.event({"choices": [], "usage": {"completion_tokens": fake.usage}})
        self.end_events()


def serve_openai() -> contextlib.AbstractContextManager[FakeOpenAI]:
    """The fake OpenAI server; ``stop`` is set on the way out so held streams end."""
    return serve_fake(Handler, lambda port: FakeOpenAI(port=port), lambda f: f.stop.set())


@pytest.fixture
def fake() -> Iterator[FakeOpenAI]:
    with serve_openai() as server:
        yield server


@pytest.fixture(params=[True, False], ids=["chunked", "connection-close"])
def framed(fake: FakeOpenAI, request: pytest.FixtureRequest) -> FakeOpenAI:
    """The fake server, its streamed responses chunked or close-delimited."""
    fake.chunked = request.param
    return fake


def job(*, stream: bool, **kwargs: Any) -> JobRequest:
    fields: dict[str, Any] = {"job_id": "job-1", "model": "llama-3-8b", "prompt": "Say hello"}
    fields.update(kwargs)
    return JobRequest(stream=stream, **fields)


async def stream_all(backend: OpenAIBackend, request: JobRequest) -> tuple[list[str], Completion]:
    async with backend.stream(request) as tokens:
        got = [token async for token in tokens]
    return got, tokens.completion


async def run(backend: OpenAIBackend, *, stream: bool) -> Completion:
    """One job, streamed or not."""
    if stream:
        return await backend.stream(job(stream=True)).collect()
    return await backend.complete(job(stream=False))


# ------------------------------------------------------------------ requests sent


async def test_complete_sends_mapped_model_options_and_bearer(fake: FakeOpenAI) -> None:
    async with OpenAIBackend(
        fake.url + "/", api_key="sk-test", model_map={"llama-3-8b": "local-gguf"}
    ) as backend:
        completion = await backend.complete(
            job(stream=False, prompt="Hi there", max_tokens=32, temperature=0.5)
        )

    assert completion == Completion("".join(TOKENS), tokens_used=11, finish_reason="stop")
    [sent] = fake.requests
    assert sent.path == "/v1/chat/completions"
    assert sent.headers["authorization"] == "Bearer sk-test"
    assert sent.headers["content-type"] == "application/json"
    assert sent.body == {
        "model": "local-gguf",
        "messages": [{"role": "user", "content": "Hi there"}],
        "stream": False,
        "max_tokens": 32,
        "temperature": 0.5,
    }


async def test_absent_options_and_key_are_omitted(fake: FakeOpenAI) -> None:
    async with OpenAIBackend(fake.url, model_map={"other": "x"}) as backend:
        await backend.complete(job(stream=False))
        await backend.stream(job(stream=True)).collect()

    for sent, stream in zip(fake.requests, (False, True), strict=True):
        assert "authorization" not in sent.headers
        assert sent.body == {
            "model": "llama-3-8b",  # not in model_map: sent as is
            "messages": [{"role": "user", "content": "Say hello"}],
            "stream": stream,
        }


async def test_a_job_with_messages_sends_them_as_the_chat(fake: FakeOpenAI) -> None:
    chat = (
        ChatMessage(role="system", content="You are terse."),
        ChatMessage(role="user", content="Say hello"),
    )
    async with OpenAIBackend(fake.url) as backend:
        await backend.complete(job(stream=False, messages=chat))
        await backend.stream(job(stream=True, messages=chat)).collect()
    for sent in fake.requests:
        assert sent.body["messages"] == [
            {"role": "system", "content": "You are terse."},
            {"role": "user", "content": "Say hello"},
        ]


async def test_call_decides_stream_flag_not_request(fake: FakeOpenAI) -> None:
    async with OpenAIBackend(fake.url) as backend:
        await backend.complete(job(stream=True))
        await backend.stream(job(stream=False)).collect()
    assert [r.body["stream"] for r in fake.requests] == [False, True]


# ------------------------------------------------------------------ results


async def test_complete_without_usage_counts_words(fake: FakeOpenAI) -> None:
    fake.usage = None
    fake.tokens = ["one two ", " three"]
    fake.finish_reason = "length"
    async with OpenAIBackend(fake.url) as backend:
        completion = await backend.complete(job(stream=False))
    assert completion == Completion("one two  three", tokens_used=3, finish_reason="length")


async def test_stream_yields_tokens_in_order_with_usage(framed: FakeOpenAI) -> None:
    async with OpenAIBackend(framed.url) as backend:
        tokens, completion = await stream_all(backend, job(stream=True))
    assert tokens == TOKENS
    assert completion == Completion("".join(TOKENS), tokens_used=11, finish_reason="stop")
    assert framed.requests[0].headers["accept"] == "text/event-stream"


async def test_stream_without_usage_counts_content_chunks(framed: FakeOpenAI) -> None:
    framed.usage = None
    framed.finish_reason = "length"
    async with OpenAIBackend(framed.url) as backend:
        tokens, completion = await stream_all(backend, job(stream=True))
    assert tokens == TOKENS
    assert completion == Completion("".join(TOKENS), len(TOKENS), "length")


async def test_stream_eof_after_finish_reason_without_done_is_ok(framed: FakeOpenAI) -> None:
    framed.mode = "eof_after_finish"
    async with OpenAIBackend(framed.url) as backend:
        tokens, completion = await stream_all(backend, job(stream=True))
    assert tokens == TOKENS
    assert completion.finish_reason == "stop"


async def test_stream_accepts_a_server_that_ignores_stream_true(fake: FakeOpenAI) -> None:
    fake.mode = "json_for_stream"
    async with OpenAIBackend(fake.url) as backend:
        tokens, completion = await stream_all(backend, job(stream=True))
    assert tokens == ["".join(TOKENS)]
    assert completion == Completion("".join(TOKENS), 11, "stop")


async def test_leaving_a_stream_early_keeps_the_backend_usable(fake: FakeOpenAI) -> None:
    async with OpenAIBackend(fake.url) as backend:
        async with backend.stream(job(stream=True)) as tokens:
            async for token in tokens:
                assert token == TOKENS[0]
                break
        assert (await backend.complete(job(stream=False))).text == "".join(TOKENS)


# ------------------------------------------------------------------ failures


@pytest.mark.parametrize("stream", [False, True])
async def test_http_500_reports_status_and_server_message(fake: FakeOpenAI, stream: bool) -> None:
    fake.mode = "error500"
    async with OpenAIBackend(fake.url) as backend:
        with pytest.raises(BackendError) as info:
            await run(backend, stream=stream)
    message = str(info.value)
    assert "500" in message
    assert "model 'nope' is not loaded" in message
    assert "\n" not in message


async def test_http_404_for_a_wrong_base_url(fake: FakeOpenAI) -> None:
    async with OpenAIBackend(fake.url + "/extra") as backend:
        with pytest.raises(BackendError, match=r"HTTP 404.*no such path"):
            await backend.complete(job(stream=False))


@pytest.mark.parametrize("stream", [False, True])
async def test_invalid_json_is_a_backend_error(fake: FakeOpenAI, stream: bool) -> None:
    fake.mode = "invalid_json"
    async with OpenAIBackend(fake.url) as backend:
        with pytest.raises(BackendError, match="not valid JSON"):
            await run(backend, stream=stream)


async def test_missing_fields_is_a_backend_error(fake: FakeOpenAI) -> None:
    fake.mode = "missing_fields"
    async with OpenAIBackend(fake.url) as backend:
        with pytest.raises(BackendError, match=r"choices\[0\]\.message"):
            await backend.complete(job(stream=False))


async def test_error_event_in_stream_is_a_backend_error(fake: FakeOpenAI) -> None:
    fake.mode = "stream_error"
    async with OpenAIBackend(fake.url) as backend:
        got: list[str] = []
        with pytest.raises(BackendError, match="CUDA out of memory"):
            async for token in backend.stream(job(stream=True)):
                got.append(token)
    assert got == ["partial"]


@pytest.mark.parametrize("stream", [False, True])
async def test_connection_refused_names_the_url(stream: bool) -> None:
    with socket.socket() as sock:  # a port nobody listens on any more
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}/v1"
    async with OpenAIBackend(url) as backend:
        with pytest.raises(BackendError) as info:
            await run(backend, stream=stream)
    assert f"{url}/chat/completions" in str(info.value)
    assert "connect" in str(info.value)


async def test_stalled_server_times_out(fake: FakeOpenAI) -> None:
    fake.mode = "stall"
    async with OpenAIBackend(fake.url, timeout=0.5) as backend:
        start = time.monotonic()
        with pytest.raises(BackendError, match="timed out"):
            await backend.complete(job(stream=False))
    assert time.monotonic() - start < 3


async def test_stream_that_stalls_midway_times_out(fake: FakeOpenAI) -> None:
    fake.mode = "stall_stream"
    got: list[str] = []
    async with OpenAIBackend(fake.url, timeout=0.5) as backend:
        start = time.monotonic()
        with pytest.raises(BackendError, match="timed out"):
            async for token in backend.stream(job(stream=True)):
                got.append(token)
    assert got == [TOKENS[0]]
    assert time.monotonic() - start < 3


async def test_stream_cut_without_done_or_finish_reason_fails(framed: FakeOpenAI) -> None:
    framed.mode = "truncated"
    got: list[str] = []
    async with OpenAIBackend(framed.url) as backend:
        with pytest.raises(BackendError, match=r"stream (ended|broke off) .*after 2 chunk"):
            async for token in backend.stream(job(stream=True)):
                got.append(token)
    assert got == TOKENS[:2]


@pytest.mark.parametrize("stream", [False, True])
async def test_response_size_is_capped(fake: FakeOpenAI, stream: bool) -> None:
    fake.mode = "big"
    fake.big_size = 200_000
    async with OpenAIBackend(fake.url, max_response_bytes=64 * 1024) as backend:
        with pytest.raises(BackendError, match="larger than 65536 bytes"):
            await run(backend, stream=stream)


# ------------------------------------------------------------------ client ownership


async def test_owned_client_is_closed_and_given_client_is_not(fake: FakeOpenAI) -> None:
    owned = OpenAIBackend(fake.url)
    await owned.complete(job(stream=False))
    await owned.aclose()
    with pytest.raises(BackendError):  # its client is closed
        await owned.complete(job(stream=False))

    async with httpx.AsyncClient() as client:
        borrowed = OpenAIBackend(fake.url, client=client)
        await borrowed.complete(job(stream=False))
        await borrowed.aclose()
        assert not client.is_closed
        assert (await OpenAIBackend(fake.url, client=client).complete(job(stream=False))).text
