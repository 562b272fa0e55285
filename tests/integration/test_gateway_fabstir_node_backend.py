"""``--backend fabstir-node:URL`` against a local HTTP server that behaves like a
fabstir-llm-node (``POST /v1/inference``, HTTP_API.md section 3), and the chat ``messages``
of a job reaching an OpenAI-compatible server (PROTOCOL.md 3.1)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from fabstir_sidecar import BackendError, FabstirClient, HostConfig, HostService, RetryConfig
from fabstir_sidecar.host.backends import FabstirNodeBackend, OpenAIBackend
from fabstir_sidecar.wire.messages import ChatMessage, JobRequest
from tests.integration.fake_http import FakeServer, QuietHandler, serve_fake
from tests.integration.helpers import make_node
from tests.integration.test_openai_backend import FakeOpenAI, serve_openai

pytestmark = [pytest.mark.integration, pytest.mark.anyio]

WORDS = ["Hel", "lo", " from", " the", " node"]


@dataclass
class FakeNode:
    port: int
    mode: str = "ok"
    requests: list[dict[str, Any]] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


class NodeHandler(QuietHandler):
    """What fabstir-llm-node's HTTP API answers (the fields of HTTP_API.md section 3)."""

    server: FakeServer[FakeNode]

    def do_POST(self) -> None:
        fake = self.server.fake
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        fake.requests.append({"path": self.path, **body})
        if self.path != "/v1/inference":
            self.send_json(404, {"error": "not found"})
            return
        if "max_tokens" not in body:  # the node requires it
            self.send_json(400, {"error": "missing field `max_tokens`"})
            return
        if fake.mode == "error":
            self.send_json(503, {"error": "model not loaded"})
            return
        words = WORDS[: body["max_tokens"]]
        finish = "length" if len(words) < len(WORDS) else "stop"
        if not body.get("stream"):
            if fake.mode == "garbage":
                self.send_json(200, {"text": "no content field"})
                return
            self.send_json(
                200,
                {
                    "model": body["model"],
                    "content": "".join(words),
                    "tokens_used": len(words),
                    "finish_reason": finish,
                    "request_id": body["request_id"],
                },
            )
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Connection", "close")
        self.close_connection = True
        self.end_headers()
        for word in words:
            self.wfile.write(f"data: {json.dumps({'content': word})}\n\n".encode())
            self.wfile.flush()
        if fake.mode == "truncated":
            return
        last = {"content": "", "finish_reason": finish, "tokens_used": len(words),
                "request_id": body["request_id"]}  # fmt: skip
        self.wfile.write(f"data: {json.dumps(last)}\n\ndata: [DONE]\n\n".encode())


@pytest.fixture
def node_server() -> Iterator[FakeNode]:
    with serve_fake(NodeHandler, lambda port: FakeNode(port=port)) as fake:
        yield fake


def job(**fields: Any) -> JobRequest:
    values: dict[str, Any] = {"job_id": "j-1", "model": "llama", "prompt": "Say hello"}
    values.update(fields)
    return JobRequest(**values)


async def test_complete_sends_the_nodes_fields(node_server: FakeNode) -> None:
    backend = FabstirNodeBackend(node_server.url + "/")
    try:
        completion = await backend.complete(job(max_tokens=2, temperature=0.3))
        default = await backend.complete(job())  # no max_tokens: the default is sent
    finally:
        await backend.aclose()
    assert (completion.text, completion.tokens_used, completion.finish_reason) == (
        "Hello", 2, "length",
    )  # fmt: skip
    assert default.text == "".join(WORDS) and default.finish_reason == "stop"
    first, second = node_server.requests
    assert first == {
        "path": "/v1/inference", "model": "llama", "prompt": "Say hello", "max_tokens": 2,
        "stream": False, "request_id": "j-1", "temperature": 0.3,
    }  # fmt: skip
    assert second["max_tokens"] == 256 and "temperature" not in second


async def test_stream_yields_the_nodes_tokens(node_server: FakeNode) -> None:
    backend = FabstirNodeBackend(node_server.url)
    try:
        async with backend.stream(job(stream=True)) as tokens:
            got = [t async for t in tokens]
    finally:
        await backend.aclose()
    assert got == WORDS
    assert tokens.completion.tokens_used == 5 and tokens.completion.finish_reason == "stop"
    assert node_server.requests[0]["stream"] is True


async def test_failures_are_backend_errors(node_server: FakeNode) -> None:
    backend = FabstirNodeBackend(node_server.url)
    try:
        node_server.mode = "error"
        with pytest.raises(BackendError, match="HTTP 503: model not loaded"):
            await backend.complete(job())
        node_server.mode = "garbage"
        with pytest.raises(BackendError, match="content"):
            await backend.complete(job())
        node_server.mode = "truncated"
        with pytest.raises(BackendError, match="without a finish_reason"):
            async with backend.stream(job(stream=True)) as tokens:
                async for _ in tokens:
                    pass
    finally:
        await backend.aclose()
    unreachable = FabstirNodeBackend("http://127.0.0.1:1")
    with pytest.raises(BackendError, match=r"127\.0\.0\.1:1"):
        await unreachable.complete(job())
    await unreachable.aclose()


async def test_a_host_fronting_a_fabstir_node_over_p2p(
    p2pd_path: str, node_server: FakeNode
) -> None:
    backend = FabstirNodeBackend(node_server.url)
    host_node = make_node(p2pd_path)
    service = HostService(host_node, HostConfig(models=("llama",)), backend)
    host_node.on_start(service.start)
    async with host_node, make_node(p2pd_path) as client_node:
        client = FabstirClient(client_node, retry=RetryConfig.none())
        addr = (await host_node.get_addrs())[0]
        result = await client.run_job(addr, "llama", "hi", max_tokens=3)
        assert result.content == "Hello from" and result.tokens_used == 3
        stream = client.stream_job(host_node.peer_id, "llama", "hi")
        assert [t async for t in stream] == WORDS
    await backend.aclose()


# ------------------------------------------------------------------ messages -> OpenAI


@pytest.fixture
def openai_server() -> Iterator[FakeOpenAI]:
    with serve_openai() as fake:
        yield fake


async def test_openai_backend_sends_the_jobs_chat_messages(openai_server: FakeOpenAI) -> None:
    chat = (ChatMessage("system", "be brief"), ChatMessage("user", "hi"))
    async with OpenAIBackend(openai_server.url) as backend:
        await backend.complete(job(prompt="system: be brief\nuser: hi\nassistant:", messages=chat))
        await backend.complete(job(prompt="plain"))
        async with backend.stream(job(stream=True, messages=chat)) as tokens:
            await tokens.collect()
    with_chat, plain, streamed = (r.body["messages"] for r in openai_server.requests)
    expected = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}]
    assert with_chat == expected and streamed == expected
    assert plain == [{"role": "user", "content": "plain"}]


async def test_job_messages_travel_over_p2p(p2pd_path: str, openai_server: FakeOpenAI) -> None:
    backend = OpenAIBackend(openai_server.url)
    host_node = make_node(p2pd_path)
    service = HostService(host_node, HostConfig(models=("llama",)), backend)
    host_node.on_start(service.start)
    chat = [ChatMessage("user", "héllo"), ChatMessage("assistant", ""), ChatMessage("user", "?")]
    async with host_node, make_node(p2pd_path) as client_node:
        client = FabstirClient(client_node, retry=RetryConfig.none())
        addr = (await host_node.get_addrs())[0]
        await client.run_job(addr, "llama", "rendered", messages=chat)
    await backend.aclose()
    assert openai_server.requests[0].body["messages"] == [m.to_json() for m in chat]
