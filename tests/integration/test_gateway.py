"""The HTTP gateway (shared/HTTP_API.md) over real nodes, with the official ``openai``
client and httpx against uvicorn on loopback. One network per module (gateway_net.py)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
from collections.abc import Iterator
from typing import Any

import anyio
import httpx
import openai
import pytest
from prometheus_client.parser import text_string_to_metric_families

from fabstir_sidecar import (
    EchoBackend,
    HostConfig,
)
from fabstir_sidecar.gateway import GatewaySettings, create_app, serve_gateway
from tests.integration.gateway_net import (
    M1,
    M2,
    SLOW,
    TOKEN,
    Net,
    gateway_client,
    running_network,
    start_host,
    wait_for_hosts,
)
from tests.integration.helpers import Inbox, eventually

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def net(p2pd_path: str) -> Iterator[Net]:
    with running_network(p2pd_path) as running:
        yield running


@pytest.fixture
def ai(net: Net) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=net.url + "/v1", api_key="unused", max_retries=0) as client:
        yield client


@pytest.fixture
def http(net: Net) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=net.url, timeout=30) as client:
        yield client


def chat(**extra: Any) -> dict[str, Any]:
    return {"model": M1, "messages": [{"role": "user", "content": "hello world"}], **extra}


def error_of(response: httpx.Response) -> dict[str, Any]:
    body = response.json()
    assert set(body) == {"error"}, body
    error: dict[str, Any] = body["error"]
    assert {"type", "code", "message"} <= set(error)
    return error


# ------------------------------------------------------------------ OpenAI-compatible


def test_list_models_counts_hosts_per_model(net: Net, ai: openai.OpenAI) -> None:
    models = {m.id: m for m in ai.models.list()}
    assert {M1, M2, SLOW} <= set(models)
    assert models[M1].owned_by == "fabstir" and models[M1].object == "model"
    assert models[M1].model_extra == {"fabstir": {"hosts": 2}}
    assert models[M2].model_extra == {"fabstir": {"hosts": 1}}
    assert isinstance(models[M1].created, int)


def test_chat_completion_plain(net: Net, ai: openai.OpenAI) -> None:
    raw = ai.chat.completions.with_raw_response.create(
        model=M1,
        messages=[
            {"role": "system", "content": "be brief"},
            {
                "role": "user",
                "content": [{"type": "text", "text": "hi "}, {"type": "text", "text": "there"}],
            },
        ],
        max_tokens=100,
    )
    completion = raw.parse()
    # The echo backend answers the rendered prompt: "<role>: <content>" lines + "assistant:".
    assert (
        completion.choices[0].message.content == "echo: system: be brief user: hi there assistant:"
    )
    assert completion.choices[0].message.role == "assistant"
    assert completion.choices[0].finish_reason == "stop"
    assert completion.model == M1 and completion.object == "chat.completion"
    assert completion.id.startswith("chatcmpl-")
    usage = completion.usage
    assert usage is not None and usage.completion_tokens == 8
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
    assert raw.headers["x-fabstir-host"] in {net.hosts["a"].peer_id, net.hosts["b"].peer_id}


def test_chat_completion_max_tokens_limits_and_finish_reason_is_the_hosts(
    ai: openai.OpenAI,
) -> None:
    completion = ai.chat.completions.create(
        model=M1, messages=[{"role": "user", "content": "one two three four"}],
        max_completion_tokens=3, max_tokens=50,  # the first wins
    )  # fmt: skip
    assert completion.choices[0].message.content == "echo: user: one"
    assert completion.choices[0].finish_reason == "length"


def test_chat_completion_streamed(net: Net, ai: openai.OpenAI) -> None:
    with ai.chat.completions.with_streaming_response.create(
        model=M1, messages=[{"role": "user", "content": "a b c"}], stream=True
    ) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        assert response.headers["x-fabstir-host"]
        chunks = list(response.parse())
    assert len({(c.id, c.created, c.model) for c in chunks}) == 1
    assert chunks[0].model == M1 and chunks[0].object == "chat.completion.chunk"
    assert chunks[0].choices[0].delta.role == "assistant"
    assert all(c.choices[0].delta.role is None for c in chunks[1:])
    text = "".join(c.choices[0].delta.content or "" for c in chunks)
    assert text == "echo: user: a b c assistant:"
    assert [c.choices[0].finish_reason for c in chunks[:-1]] == [None] * (len(chunks) - 1)
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert chunks[-1].choices[0].delta.content is None


def test_stream_wire_format_ends_with_done(http: httpx.Client) -> None:
    with http.stream("POST", "/v1/chat/completions", json=chat(stream=True)) as response:
        body = response.read().decode()
    events = [e for e in body.split("\n\n") if e]
    assert events[-1] == "data: [DONE]"
    last = json.loads(events[-2].removeprefix("data: "))
    assert last["choices"][0]["delta"] == {} and last["choices"][0]["finish_reason"] == "stop"


def test_criteria_from_headers_and_body(net: Net, http: httpx.Client) -> None:
    a, b = net.hosts["a"].peer_id, net.hosts["b"].peer_id
    r = http.post("/v1/chat/completions", json=chat(), headers={"X-Fabstir-Location": "de"})
    assert r.status_code == 200 and r.headers["x-fabstir-host"] == b
    r = http.post("/v1/chat/completions", json=chat(fabstir={"min_reputation": 80}))
    assert r.status_code == 200 and r.headers["x-fabstir-host"] == a
    # For the same criterion, the body wins over the header.
    r = http.post(
        "/v1/chat/completions",
        json=chat(fabstir={"min_reputation": 10, "location": "DE"}),
        headers={"X-Fabstir-Min-Reputation": "95", "X-Fabstir-Location": "US"},
    )
    assert r.status_code == 200 and r.headers["x-fabstir-host"] == b
    # Both combine: location DE (header) and min_reputation 80 (body) match nobody.
    r = http.post(
        "/v1/chat/completions",
        json=chat(fabstir={"min_reputation": 80}),
        headers={"X-Fabstir-Location": "DE"},
    )
    assert r.status_code == 404
    error = error_of(r)
    assert error["code"] == "model_not_found"
    excluded = error["fabstir"]["excluded"]
    assert excluded["location"] >= 1 and excluded["min_reputation"] >= 1
    # max_latency_ms and min_uptime_s parse and apply too.
    r = http.post(
        "/v1/chat/completions", json=chat(), headers={"X-Fabstir-Max-Latency-Ms": "0.0001"}
    )
    assert r.status_code == 404 and error_of(r)["fabstir"]["excluded"]["max_latency_ms"] >= 2
    r = http.post("/v1/chat/completions", json=chat(fabstir={"min_uptime_s": 10**9}))
    assert r.status_code == 404 and error_of(r)["fabstir"]["excluded"]["min_uptime_s"] >= 2


def test_pinned_peer(net: Net, http: httpx.Client, ai: openai.OpenAI) -> None:
    b = net.hosts["b"].peer_id
    for _ in range(3):
        r = http.post("/v1/chat/completions", json=chat(), headers={"X-Fabstir-Peer-Id": b})
        assert r.status_code == 200 and r.headers["x-fabstir-host"] == b
    raw = ai.chat.completions.with_raw_response.create(
        model=M1,
        messages=[{"role": "user", "content": "x"}],
        extra_body={"fabstir": {"peer_id": net.hosts["a"].peer_id}},
    )
    assert raw.headers["x-fabstir-host"] == net.hosts["a"].peer_id
    # A pinned host that does not serve the model: 404 with the explanation.
    r = http.post(
        "/v1/chat/completions",
        json=chat(model=M2),
        headers={"X-Fabstir-Peer-Id": net.hosts["a"].peer_id},
    )
    assert r.status_code == 404 and error_of(r)["fabstir"]["excluded"]["model"] == 1
    # A pinned host nobody can reach: 502 peer_unreachable naming it.
    stranger = net.boot.peer_id  # not a host: it does not speak status
    r = http.post("/v1/chat/completions", json=chat(), headers={"X-Fabstir-Peer-Id": stranger})
    assert r.status_code == 502 and error_of(r)["code"] == "peer_unreachable"
    assert r.headers["x-fabstir-host"] == stranger


def test_model_not_found_explains(net: Net, ai: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        ai.chat.completions.create(
            model="no-such-model", messages=[{"role": "user", "content": "x"}]
        )
    assert caught.value.status_code == 404
    body = caught.value.body
    assert isinstance(body, dict)
    assert body["code"] == "model_not_found" and body["type"] == "invalid_request_error"
    explanation = body["fabstir"]
    assert explanation["hosts_seen"] >= 3
    assert explanation["excluded"]["model"] == 3
    assert set(explanation["excluded"]) == {
        "model", "min_reputation", "max_latency_ms", "min_uptime_s", "location", "peer_id",
        "unreachable",
    }  # fmt: skip
    assert "3 do not serve the model" in body["message"]


def test_failover_when_the_best_host_is_killed(net: Net, http: httpx.Client) -> None:
    async def body() -> None:
        async with contextlib.AsyncExitStack() as stack:
            config = HostConfig(models=("m-fo",))
            first = await start_host(
                stack, net.p2pd_path, "fo1", config, EchoBackend(), bootstrap=(net.boot_addr,),
                restart_daemon=False,
            )  # fmt: skip
            second = await start_host(
                stack, net.p2pd_path, "fo2", config, EchoBackend(), bootstrap=(net.boot_addr,),
                restart_daemon=False,
            )  # fmt: skip
            await wait_for_hosts(net.gw_node, {first.peer_id, second.peer_id})
            async with httpx.AsyncClient(base_url=net.url, timeout=30) as client:
                ranked = (await client.get("/v1/hosts", params={"model": "m-fo"})).json()["hosts"]
                best, other = (
                    (first, second) if ranked[0]["peer_id"] == first.peer_id else (second, first)
                )
                pid = best.node.daemon_pid
                assert pid is not None
                os.kill(pid, signal.SIGKILL)  # the best host dies; its status is still cached
                r = await client.post("/v1/chat/completions", json=chat(model="m-fo"))
                assert r.status_code == 200, r.text
                assert r.headers["x-fabstir-host"] == other.peer_id
                text = (await client.get("/metrics")).text
                assert _value(text, "fabstir_gateway_failovers_total") >= 1

    net.run(body)


def test_disconnecting_streaming_client_frees_the_hosts_slot(net: Net) -> None:
    slow = net.hosts["slow"]

    async def body() -> None:
        async with httpx.AsyncClient(base_url=net.url, timeout=30) as client:
            words = " ".join(["w"] * 200)  # 200 tokens at 0.2 s each: 40 s if not cancelled
            request = chat(model=SLOW, stream=True, messages=[{"role": "user", "content": words}])
            async with client.stream("POST", "/v1/chat/completions", json=request) as response:
                assert response.status_code == 200
                async for line in response.aiter_lines():
                    if line.startswith("data:"):
                        break
                assert slow.service.active_jobs == 1
            # The response is closed: the gateway cancels the job, the host frees its slot.
            await eventually(lambda: slow.service.active_jobs == 0, timeout=10)
            r = await client.post(
                "/v1/chat/completions",
                json=chat(model=SLOW, messages=[{"role": "user", "content": "x"}]),
            )
            assert r.status_code == 200

    net.run(body)


def test_every_matching_host_busy_is_503_with_retry_after(net: Net) -> None:
    slow = net.hosts["slow"]

    async def body() -> None:
        async with httpx.AsyncClient(base_url=net.url, timeout=30) as client:
            request = chat(
                model=SLOW, stream=True, messages=[{"role": "user", "content": "w " * 100}]
            )
            async with client.stream("POST", "/v1/chat/completions", json=request) as held:
                assert held.status_code == 200
                r = await client.post("/v1/chat/completions", json=chat(model=SLOW))
                assert r.status_code == 503, r.text
                assert error_of(r)["code"] == "host_busy" and int(r.headers["retry-after"]) >= 1
                assert error_of(r)["type"] == "service_unavailable"
            await eventually(lambda: slow.service.active_jobs == 0, timeout=10)

    net.run(body)


# ------------------------------------------------------------------ fabstir-llm-node API


def test_inference_plain_and_streamed(net: Net, http: httpx.Client) -> None:
    r = http.post(
        "/v1/inference", json={"model": M2, "prompt": "a b", "max_tokens": 10, "request_id": "r-1"}
    )
    assert r.status_code == 200
    assert r.json() == {
        "model": M2, "content": "echo: a b", "tokens_used": 3, "finish_reason": "stop",
        "request_id": "r-1",
    }  # fmt: skip
    assert r.headers["x-fabstir-host"] == net.hosts["b"].peer_id
    generated = http.post(
        "/v1/inference", json={"model": M2, "prompt": "a", "max_tokens": 10}
    ).json()
    assert generated["request_id"]
    with http.stream(
        "POST",
        "/v1/inference",
        json={"model": M2, "prompt": "a b", "max_tokens": 10, "stream": True},
    ) as response:
        events = [e for e in response.read().decode().split("\n\n") if e]
    assert events[-1] == "data: [DONE]"
    data = [json.loads(e.removeprefix("data: ")) for e in events[:-1]]
    assert [d["content"] for d in data] == ["echo:", " a", " b", ""]
    assert data[-1]["finish_reason"] == "stop" and data[-1]["tokens_used"] == 3
    assert data[-1]["request_id"]
    r = http.post("/v1/inference", json={"model": M2, "prompt": "a"})
    assert r.status_code == 400 and error_of(r)["code"] == "missing_field"


def test_health_healthy_degraded_unhealthy(net: Net, http: httpx.Client) -> None:
    assert http.get("/health").json() == {"status": "healthy", "issues": []}

    async def body() -> None:
        lonely = net.node()  # no bootstrap: no connected peer
        async with lonely:
            async with gateway_client(lonely) as c:
                r = await c.get("/health")
                assert r.status_code == 200 and r.json()["status"] == "degraded"
                assert r.json()["issues"] == ["no connected peer"]
                await lonely.connect_to_peer(net.boot_addr)
                await eventually(lambda: _status(c, "healthy"))
                # A killed daemon: degraded while it restarts, then healthy, restarts counted.
                pid = lonely.daemon_pid
                assert pid is not None
                os.kill(pid, signal.SIGKILL)
                await eventually(lambda: _status(c, "degraded"), timeout=10)
                await eventually(lambda: _status(c, "healthy"), timeout=20)
                node = (await c.get("/v1/node")).json()
                assert node["daemon"]["restarts"] >= 1 and node["peer_id"] == lonely.peer_id
            app = create_app(lonely)
        # The node stopped: unhealthy (503), with its own body.
        async with serve_gateway(app) as url, httpx.AsyncClient(base_url=url) as c:
            r = await c.get("/health")
            assert r.status_code == 503 and r.json()["status"] == "unhealthy"

    net.run(body)


async def _status(client: httpx.AsyncClient, status: str) -> bool:
    return bool((await client.get("/health")).json()["status"] == status)


# ------------------------------------------------------------------ the node over HTTP


def test_node_peers_and_connect(net: Net, http: httpx.Client) -> None:
    info = http.get("/v1/node").json()
    assert info["peer_id"] == net.gw_node.peer_id and info["running"] is True
    assert info["connected_peers"] >= 1 and info["addrs"][0].endswith("/p2p/" + info["peer_id"])
    assert net.boot.peer_id in http.get("/v1/peers").json()["peers"]
    r = http.post("/v1/peers", json={"multiaddr": net.boot_addr})
    assert r.status_code == 200 and r.json() == {"peer_id": net.boot.peer_id}
    r = http.post("/v1/peers", json={"multiaddr": "/ip4/1.2.3/tcp/x"})
    assert r.status_code == 422 and error_of(r)["code"] == "invalid_multiaddr"
    r = http.post("/v1/peers", json={"multiaddr": "/ip4/127.0.0.1/tcp/4001"})  # no /p2p/
    assert r.status_code == 422
    dead = "/ip4/127.0.0.1/tcp/1/p2p/" + net.hosts["a"].peer_id
    r = http.post(
        "/v1/peers",
        json={
            "multiaddr": dead.replace(
                net.hosts["a"].peer_id, "12D3KooWJWoaqZhDaoEFshF7Rh1bpY9ohihFhzcW6d69Lr2NASuq"
            )
        },
    )
    assert r.status_code == 502 and error_of(r)["code"] == "peer_unreachable"


def test_hosts_ranked_with_every_field_and_explanation(net: Net, http: httpx.Client) -> None:
    r = http.get("/v1/hosts", params={"model": M1})
    hosts = r.json()["hosts"]
    assert {h["peer_id"] for h in hosts} == {net.hosts["a"].peer_id, net.hosts["b"].peer_id}
    fields = {"peer_id", "addrs", "models", "reputation", "uptime_s", "location", "latency_ms",
              "active_jobs", "max_jobs", "api_url"}  # fmt: skip
    assert all(set(h) == fields for h in hosts)
    assert [h["latency_ms"] for h in hosts] == sorted(h["latency_ms"] for h in hosts)
    r = http.get("/v1/hosts", params=[("model", M1), ("model", M2)])
    assert [h["peer_id"] for h in r.json()["hosts"]] == [net.hosts["b"].peer_id]
    assert len(http.get("/v1/hosts", params={"limit": 1}).json()["hosts"]) == 1
    r = http.get("/v1/hosts", params={"min_reputation": 1000})
    assert r.status_code == 404 and error_of(r)["code"] == "no_matching_host"
    assert error_of(r)["fabstir"]["excluded"]["min_reputation"] >= 3
    r = http.get("/v1/hosts", params={"model": "zzz", "location": "JP"})
    assert error_of(r)["code"] == "model_not_found"
    for bad in ({"limit": "0"}, {"limit": "101"}, {"limit": "x"}):
        r = http.get("/v1/hosts", params=bad)
        assert r.status_code == 400 and error_of(r)["code"] == "invalid_field"
    r = http.get("/v1/hosts", params={"min_reputation": "high"})
    assert r.status_code == 400 and error_of(r)["code"] == "invalid_criteria"


def test_messages_out_and_in_over_sse_with_two_subscribers(net: Net) -> None:
    a = net.hosts["a"]

    async def body() -> None:
        inbox = Inbox()
        unsubscribe = a.node.on_message(inbox)
        try:
            async with httpx.AsyncClient(base_url=net.url, timeout=30) as client:
                r = await client.post(
                    "/v1/messages", json={"peer_id": a.peer_id, "message": {"hi": [1, 2]}}
                )
                assert r.status_code == 202 and r.json() == {"sent": True}
                [(sender, message)] = await inbox.wait_for(1)
                assert sender == net.gw_node.peer_id and message == {"hi": [1, 2]}

                async def subscribe(got: list[dict[str, Any]], ready: anyio.Event) -> None:
                    async with client.stream("GET", "/v1/messages") as response:
                        assert response.headers["content-type"].startswith("text/event-stream")
                        ready.set()
                        event = None
                        async for line in response.aiter_lines():
                            if line.startswith("event:"):
                                event = line.removeprefix("event:").strip()
                            elif line.startswith("data:"):
                                assert event == "message"
                                got.append(json.loads(line.removeprefix("data:")))
                                if len(got) == 2:
                                    return

                first: list[dict[str, Any]] = []
                second: list[dict[str, Any]] = []
                async with anyio.create_task_group() as tg:
                    ready = [anyio.Event(), anyio.Event()]
                    tg.start_soon(subscribe, first, ready[0])
                    tg.start_soon(subscribe, second, ready[1])
                    for event in ready:
                        await event.wait()
                    await a.node.send_message(net.gw_node.peer_id, {"n": 1})
                    await a.node.send_message(net.gw_node.peer_id, "two")
                expected = [
                    {"from": a.peer_id, "message": {"n": 1}},
                    {"from": a.peer_id, "message": "two"},
                ]
                assert first == expected and second == expected
                r = await client.post("/v1/messages", json={"peer_id": "not-a-peer", "message": 1})
                assert r.status_code == 400
                r = await client.post("/v1/messages", json={"peer_id": a.peer_id})
                assert r.status_code == 400 and error_of(r)["code"] == "missing_field"
                stranger = "12D3KooWJWoaqZhDaoEFshF7Rh1bpY9ohihFhzcW6d69Lr2NASuq"
                r = await client.post("/v1/messages", json={"peer_id": stranger, "message": 1})
                assert r.status_code == 502 and error_of(r)["code"] == "peer_unreachable"
                big = {"peer_id": a.peer_id, "message": "x" * (1024 * 1024)}
                r = await client.post("/v1/messages", json=big)
                assert r.status_code == 413
        finally:
            unsubscribe()

    net.run(body)


def test_metrics_parse_with_prometheus_client(net: Net, http: httpx.Client) -> None:
    http.post("/v1/chat/completions", json=chat())
    with http.stream("POST", "/v1/chat/completions", json=chat(stream=True)) as response:
        response.read()
    http.post("/v1/chat/completions", content=b"{")
    r = http.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    families = {f.name: f for f in text_string_to_metric_families(r.text)}
    for name in (
        "fabstir_client_jobs", "fabstir_client_job_duration_seconds", "fabstir_tokens_streamed",
        "fabstir_gateway_requests", "fabstir_gateway_failovers", "fabstir_host_lookups",
        "fabstir_host_lookup_duration_seconds", "fabstir_connected_peers",
        "fabstir_daemon_restarts", "fabstir_sdk_messages_received",
        "fabstir_sdk_messages_refused", "fabstir_sdk_messages_dropped",
    ):  # fmt: skip
        assert name in families, name
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for f in families.values()
        for s in f.samples
    }
    assert samples[("fabstir_client_jobs_total", (("outcome", "result"),))] >= 2
    assert samples[("fabstir_tokens_streamed_total", ())] >= 3
    assert (
        samples[
            (
                "fabstir_gateway_requests_total",
                (("route", "/v1/chat/completions"), ("status", "400")),
            )
        ]
        >= 1
    )
    assert samples[("fabstir_host_lookups_total", (("outcome", "match"),))] >= 2
    assert samples[("fabstir_client_job_duration_seconds_count", ())] >= 2
    assert samples[("fabstir_connected_peers", ())] >= 1


def test_metrics_of_a_hosting_node(net: Net) -> None:
    a = net.hosts["a"]

    async def body() -> str:
        async with gateway_client(a.node, host=a.service) as client:
            return (await client.get("/metrics")).text

    text = net.run(body)
    names = {f.name for f in text_string_to_metric_families(text)}
    assert {"fabstir_host_jobs", "fabstir_host_active_jobs", "fabstir_host_admission"} <= names
    assert _value(text, 'fabstir_host_admission_total{decision="admitted",protocol="job"}') >= 1


def _value(text: str, sample: str) -> float:
    for line in text.splitlines():
        if line.startswith(sample + " "):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{sample} not in metrics")


# ------------------------------------------------------------------ bad input, auth


def test_bad_input_is_answered_in_openai_shape(
    net: Net, http: httpx.Client, ai: openai.OpenAI
) -> None:
    cases: list[tuple[dict[str, Any], int, str]] = [
        ({"content": b"{not json"}, 400, "invalid_json"),
        ({"json": [1, 2]}, 400, "invalid_json"),
        ({"json": {"messages": [{"role": "user", "content": "x"}]}}, 400, "missing_field"),
        ({"json": {"model": M1}}, 400, "missing_field"),
        ({"json": chat(max_tokens=-1)}, 400, "invalid_field"),
        (
            {"json": chat(messages=[{"role": "user", "content": [{"type": "image_url"}]}])},
            400,
            "invalid_field",
        ),
        (
            {"json": chat(), "headers": {"X-Fabstir-Min-Reputation": "lots"}},
            400,
            "invalid_criteria",
        ),
        ({"json": chat(fabstir={"location": "Germany"})}, 400, "invalid_criteria"),
        ({"json": chat(fabstir={"peer_id": "nope"})}, 400, "invalid_criteria"),
        (
            {"content": b"x" * (2 * 1024 * 1024), "headers": {"Content-Type": "application/json"}},
            413,
            "request_too_large",
        ),
    ]
    for kwargs, status, code in cases:
        r = http.post("/v1/chat/completions", **kwargs)
        assert r.status_code == status, (kwargs.get("json"), r.text)
        error = error_of(r)
        assert error["code"] == code
        assert error["type"] == "invalid_request_error"

    def chunked() -> Iterator[bytes]:
        for _ in range(3):
            yield b"x" * (512 * 1024)

    r = http.post("/v1/chat/completions", content=chunked())  # no Content-Length
    assert r.status_code == 413 and error_of(r)["code"] == "request_too_large"
    r = http.get("/v1/chat/completions")
    assert r.status_code == 405 and error_of(r)["code"] == "method_not_allowed"
    r = http.get("/v1/nothing-here")
    assert r.status_code == 404 and error_of(r)["code"] == "not_found"
    with pytest.raises(openai.BadRequestError) as caught:
        ai.chat.completions.create(model=M1, messages=[])
    assert caught.value.status_code == 400


def test_auth_on_and_off(net: Net, http: httpx.Client) -> None:
    assert http.get("/v1/node").status_code == 200  # this app has no token
    with httpx.Client(base_url=net.auth_url, timeout=30) as client:
        for path in ("/v1/node", "/metrics", "/unknown"):
            r = client.get(path)
            assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
            assert error_of(r) | {"message": ""} == {
                "type": "authentication_error", "code": "invalid_token", "message": "",
            }  # fmt: skip
        r = client.get("/v1/node", headers={"Authorization": "Bearer wrong"})
        assert r.status_code == 401
        assert client.get("/health").status_code == 200  # no auth on /health
        r = client.get("/v1/node", headers={"Authorization": f"Bearer {TOKEN}"})
        assert r.status_code == 200
    with openai.OpenAI(base_url=net.auth_url + "/v1", api_key=TOKEN, max_retries=0) as ai:
        assert ai.chat.completions.create(model=M1, messages=[{"role": "user", "content": "x"}])
    with (
        openai.OpenAI(base_url=net.auth_url + "/v1", api_key="bad", max_retries=0) as ai,
        pytest.raises(openai.AuthenticationError),
    ):
        ai.models.list()


# ------------------------------------------------------------------ hardening


def test_a_connection_without_a_request_head_is_closed(net: Net) -> None:
    async def body() -> None:
        app = create_app(net.gw_node)
        async with serve_gateway(app, header_timeout=0.5) as url:
            port = int(url.rsplit(":", 1)[1])
            async with await anyio.connect_tcp("127.0.0.1", port) as sock:
                await sock.send(b"GET /health HTTP/1.1\r\nHost: x\r\n")  # never finished
                with anyio.fail_after(5):
                    with contextlib.suppress(anyio.EndOfStream, anyio.BrokenResourceError):
                        while await sock.receive():
                            pass

    net.run(body)


def test_concurrent_request_cap_is_503_gateway_busy(net: Net) -> None:
    slow = net.hosts["slow"]

    async def body() -> None:
        async with gateway_client(net.gw_node, settings=GatewaySettings(max_concurrent=1)) as c:
            request = chat(
                model=SLOW, stream=True, messages=[{"role": "user", "content": "w " * 50}]
            )
            async with c.stream("POST", "/v1/chat/completions", json=request) as held:
                assert held.status_code == 200
                r = await c.get("/v1/node")
                assert r.status_code == 503 and error_of(r)["code"] == "gateway_busy"
                assert int(r.headers["retry-after"]) >= 1
                assert (await c.get("/health")).status_code == 200  # never capped
            await eventually(lambda: slow.service.active_jobs == 0, timeout=10)
            assert (await c.get("/v1/node")).status_code == 200

    net.run(body)


def test_job_timeout_is_504_before_and_an_error_event_after_the_first_token(net: Net) -> None:
    slow = net.hosts["slow"]

    async def body() -> None:
        async with gateway_client(net.gw_node, settings=GatewaySettings(job_timeout=0.5)) as c:
            request = chat(model=SLOW, messages=[{"role": "user", "content": "w " * 20}])
            r = await c.post("/v1/chat/completions", json=request)
            assert r.status_code == 504 and error_of(r)["code"] == "host_timeout"
            assert r.headers["x-fabstir-host"] == slow.peer_id
            await eventually(lambda: slow.service.active_jobs == 0, timeout=10)
            async with c.stream(
                "POST", "/v1/chat/completions", json={**request, "stream": True}
            ) as s:
                assert s.status_code == 200
                events = [e for e in (await s.aread()).decode().split("\n\n") if e]
            assert events[-1] == "data: [DONE]"
            error = json.loads(events[-2].removeprefix("data: "))["error"]
            assert error["code"] == "host_timeout" and error["type"] == "api_error"
            assert json.loads(events[0].removeprefix("data: "))["choices"][0]["delta"]["content"]
            await eventually(lambda: slow.service.active_jobs == 0, timeout=10)

    net.run(body)


def test_a_streamed_request_that_fails_before_its_first_chunk_is_a_plain_error(
    http: httpx.Client,
) -> None:
    request = chat(model="no-such-model", stream=True)
    with http.stream("POST", "/v1/chat/completions", json=request) as response:
        assert response.status_code == 404
        assert response.headers["content-type"].startswith("application/json")
        assert json.loads(response.read())["error"]["code"] == "model_not_found"


def test_message_subscribers_get_keepalive_comments(net: Net) -> None:
    async def body() -> None:
        settings = GatewaySettings(keepalive=0.2)
        async with (
            gateway_client(net.gw_node, settings=settings, timeout=10) as c,
            c.stream("GET", "/v1/messages") as response,
        ):
            with anyio.fail_after(5):
                async for line in response.aiter_lines():
                    if line == ": keepalive":
                        return

    net.run(body)
