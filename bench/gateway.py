"""The HTTP gateway's overhead against the same jobs through ``FabstirClient`` directly.

One host process (EchoBackend), one ``fabstir-sidecar gateway`` process (the CLI, as a
deployment runs it) and this process: it sends each job either straight to the host with
its own node's FabstirClient, or over HTTP (httpx) to the gateway, interleaved so that noise
hits both alike. Rows: non-streamed chat completion median added, streamed first-token
latency added, SSE token throughput through the gateway vs the direct job's token frames/s,
and 100 concurrent streaming clients with their error count.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
import time
from collections.abc import AsyncIterator
from typing import Any

import anyio
import httpx

from fabstir_sidecar.client import FabstirClient, RetryConfig

from .common import Batch, Ctx, host_process, interleaved
from .hostproc import MODEL
from .procs import LineProcess, progress
from .stats import Figure, Row, Target


@contextlib.asynccontextmanager
async def gateway_process(ctx: Ctx, bootstrap: str) -> AsyncIterator[str]:
    """``fabstir-sidecar gateway --json`` on a free loopback port; yields its URL."""
    argv = [sys.executable, "-m", "fabstir_sidecar", "gateway", "--json"]
    argv += ["--http", "127.0.0.1:0", "--bootstrap", bootstrap, "--no-dht", "--p2pd", str(ctx.p2pd)]
    env = {**os.environ, "P2P_ENABLE_MDNS": "false"}
    proc = await LineProcess.start(argv, name="gateway", env=env)
    ctx.child_pids.add(proc.pid)
    try:
        ready = await proc.read_json(timeout=60)
        if ready.get("event") != "ready":
            raise RuntimeError(f"gateway failed to start: {ready}")
        yield str(ready["http"])
    finally:
        with contextlib.suppress(ProcessLookupError):
            proc.proc.send_signal(signal.SIGTERM)
        code = await proc.aclose(grace=10)
        if code not in (0, None):
            progress(f"gateway exited with code {code}")


class RawHttp:
    """A minimal keep-alive HTTP/1.1 client (one connection, asyncio streams): the latency
    rows measure the gateway, not a client library's own cost (httpx adds about a
    millisecond per request, shown in its own rows)."""

    def __init__(
        self, address: tuple[str, int], reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        self.address = address
        self.reader, self.writer = reader, writer

    @classmethod
    async def connect(cls, url: str) -> RawHttp:
        host, port = url.removeprefix("http://").rsplit(":", 1)
        address = (host, int(port))
        return cls(address, *await asyncio.open_connection(*address))

    async def post(self, path: str, body: dict[str, Any]) -> tuple[int, bytes, float]:
        """Status, body and the ms until the first body bytes (chunked or not)."""
        data = json.dumps(body).encode()
        request = (
            f"POST {path} HTTP/1.1\r\nHost: gw\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(data)}\r\n\r\n".encode()
            + data
        )
        for attempt in (1, 2):
            self.writer.write(request)
            t0 = time.perf_counter()
            try:
                raw_head = await self.reader.readuntil(b"\r\n\r\n")
                break
            except (asyncio.IncompleteReadError, ConnectionError):
                if attempt == 2:
                    raise
                # The server closed the idle keep-alive connection: open a new one.
                await self.aclose()
                self.reader, self.writer = await asyncio.open_connection(*self.address)
        head = raw_head.decode("latin-1").lower()
        status = int(head.split(" ", 2)[1])
        if "transfer-encoding: chunked" not in head:
            length = int(head.split("content-length:", 1)[1].split("\r\n", 1)[0])
            payload = await self.reader.readexactly(length)
            return status, payload, (time.perf_counter() - t0) * 1000
        parts: list[bytes] = []
        first = 0.0
        while True:
            size = int((await self.reader.readuntil(b"\r\n")).strip(), 16)
            if size == 0:
                await self.reader.readuntil(b"\r\n")
                return status, b"".join(parts), first
            parts.append(await self.reader.readexactly(size))
            first = first or (time.perf_counter() - t0) * 1000
            await self.reader.readexactly(2)

    async def aclose(self) -> None:
        self.writer.close()
        with contextlib.suppress(OSError):
            await self.writer.wait_closed()


def _chat(prompt: str, stream: bool) -> dict[str, Any]:
    return {"model": MODEL, "messages": [{"role": "user", "content": prompt}], "stream": stream}


async def run(ctx: Ctx) -> None:
    # One request per method per round, the order rotated each round: samples of the same
    # round are taken back to back, so the added latency is the median of paired differences
    # (machine load drifts over seconds; pairs see the same load).
    rounds = ctx.pick(10, 1000)
    per_round = 1
    words = ctx.pick(500, 20_000)
    token_rounds = ctx.pick(2, 7)
    clients = ctx.pick(10, 100)
    prompt = "hello gateway"
    # The gateway renders the chat to "user: <content>\nassistant:": the direct job gets the
    # same prompt, so the host does the same work either way.
    rendered = f"user: {prompt}\nassistant:"

    async with (
        host_process(ctx, name="gw-host", profile_as="gateway") as host,
        ctx.node() as node,
        gateway_process(ctx, host.addr) as url,
        httpx.AsyncClient(
            base_url=url, timeout=60, limits=httpx.Limits(max_connections=clients + 10)
        ) as http,
    ):
        ctx.track(node)
        await node.connect_to_peer(host.addr)
        peer = host.peer_id
        client = FabstirClient(node, retry=RetryConfig.none())

        async def direct_job() -> None:
            await client.run_job(peer, MODEL, rendered)

        raw = await RawHttp.connect(url)

        async def gateway_job() -> None:
            status, body, _ = await raw.post("/v1/chat/completions", _chat(prompt, False))
            if status != 200:
                raise RuntimeError(f"gateway answered {status}: {body!r}")

        async def httpx_job() -> None:
            r = await http.post("/v1/chat/completions", json=_chat(prompt, False))
            if r.status_code != 200:
                raise RuntimeError(f"gateway answered {r.status_code}: {r.text}")

        async def direct_first() -> float:
            t0 = time.perf_counter()
            stream = client.stream_job(peer, MODEL, rendered)
            first = None
            async for _ in stream:
                first = first or time.perf_counter()
            assert first is not None
            return (first - t0) * 1000

        async def gateway_first() -> float:
            status, body, first_ms = await raw.post("/v1/chat/completions", _chat(prompt, True))
            if status != 200 or not body.endswith(b"data: [DONE]\n\n"):
                raise RuntimeError(f"gateway answered {status}: {body[-200:]!r}")
            return first_ms

        async def httpx_first() -> float:
            t0 = time.perf_counter()
            first = None
            async with http.stream("POST", "/v1/chat/completions", json=_chat(prompt, True)) as r:
                async for _ in r.aiter_raw():
                    first = first or time.perf_counter()
            assert first is not None and r.status_code == 200
            return (first - t0) * 1000

        def timed(op: Any) -> Batch:
            async def batch(n: int) -> list[float]:
                out = []
                for _ in range(n):
                    t0 = time.perf_counter()
                    await op()
                    out.append((time.perf_counter() - t0) * 1000)
                return out

            return batch

        def sampled(op: Any) -> Batch:
            async def batch(n: int) -> list[float]:
                return [await op() for _ in range(n)]

            return batch

        progress(f"gateway: {rounds} rounds of one job per method, plain and first token")
        await gateway_job()  # the gateway's first lookup happens here, not in a sample
        methods = {  # each way in: (the job, its first token)
            "direct": (direct_job, direct_first),
            "gateway": (gateway_job, gateway_first),
            "httpx": (httpx_job, httpx_first),
        }
        plain = await interleaved(
            {k: timed(job) for k, (job, _) in methods.items()},
            rounds=rounds, per_round=per_round, warmup=5,
        )  # fmt: skip
        first = await interleaved(
            {k: sampled(first_token) for k, (_, first_token) in methods.items()},
            rounds=rounds, per_round=per_round, warmup=5,
        )  # fmt: skip

        # ---- token throughput of one long streamed job
        long_prompt = " ".join(f"w{i % 1000}" for i in range(words))
        long_rendered = f"user: {long_prompt}\nassistant:"
        count = words + 3  # "echo:", "user:", one per word, "assistant:"

        async def direct_tokens(_: int) -> list[float]:
            t0 = time.perf_counter()
            got = 0
            async for _token in client.stream_job(peer, MODEL, long_rendered):
                got += 1
            if got != count:
                raise RuntimeError(f"direct: {got} tokens, expected {count}")
            return [got / (time.perf_counter() - t0)]

        async def gateway_tokens(_: int) -> list[float]:
            t0 = time.perf_counter()
            events = 0
            body = _chat(long_prompt, True)
            tail = b""  # an event marker may be split across two reads
            async with http.stream("POST", "/v1/chat/completions", json=body) as r:
                async for data in r.aiter_raw():
                    joined = tail + data
                    events += joined.count(b"data: ")
                    tail = joined[-5:]
            got = events - 2  # the closing chunk and [DONE] carry no token
            if got != count:
                raise RuntimeError(f"gateway: {got} token chunks, expected {count}")
            return [got / (time.perf_counter() - t0)]

        progress(f"gateway: {token_rounds} streamed jobs of {count} tokens per method")
        tokens = await interleaved(
            {"direct": direct_tokens, "gateway": gateway_tokens},
            rounds=token_rounds, per_round=1, warmup=1,
        )  # fmt: skip

        # ---- concurrent streaming clients
        errors: list[str] = []
        latencies: list[float] = []

        async def one_stream() -> None:
            t0 = time.perf_counter()
            try:
                async with http.stream(
                    "POST", "/v1/chat/completions", json=_chat("a b c d e f g h", True)
                ) as r:
                    raw = b"".join([d async for d in r.aiter_raw()])
                if r.status_code != 200 or not raw.endswith(b"data: [DONE]\n\n"):
                    errors.append(f"{r.status_code}: {raw[-200:]!r}")
            except httpx.HTTPError as exc:
                errors.append(repr(exc))
            latencies.append((time.perf_counter() - t0) * 1000)

        progress(f"gateway: {clients} concurrent streaming clients")
        t0 = time.perf_counter()
        async with anyio.create_task_group() as tg:
            for _ in range(clients):
                tg.start_soon(one_stream)
        concurrent_s = time.perf_counter() - t0
        if errors:
            progress(f"gateway: {len(errors)} stream errors, first: {errors[0]}")
        await raw.aclose()

    _rows(ctx, plain, first, tokens, clients, errors, latencies, concurrent_s)


def _rows(
    ctx: Ctx,
    plain: dict[str, list[float]],
    first: dict[str, list[float]],
    tokens: dict[str, list[float]],
    clients: int,
    errors: list[str],
    latencies: list[float],
    concurrent_s: float,
) -> None:
    for key, samples, what in (
        ("chat", plain, "non-streamed chat completion"),
        ("first_token", first, "streamed chat completion, first token"),
    ):
        gw = Figure.of(samples["gateway"], "ms", tail=True)
        direct = Figure.of(samples["direct"], "ms", tail=True)
        ctx.add(
            Row(
                f"gw.{key}",
                f"{what} through the gateway (minimal keep-alive HTTP client)",
                gw,
                direct,
                "the same job, FabstirClient directly",
            )
        )
        ctx.add(
            Row(
                f"gw.{key}.httpx",
                f"{what} through the gateway with httpx (its own cost included)",
                Figure.of(samples["httpx"], "ms", tail=True),
                direct,
                "the same job, FabstirClient directly",
            )
        )
        pairs = [g - d for g, d in zip(samples["gateway"], samples["direct"], strict=True)]
        ctx.add(
            Row(
                f"gw.{key}.added",
                f"{what}: gateway minus direct, median of back-to-back pairs",
                Figure.of(pairs, "ms"),
                target=Target("<=", 1.0, on="value", text="<= 1 ms added"),
                extra={
                    "gateway_median_ms": gw.median,
                    "direct_median_ms": direct.median,
                    "difference_of_medians_ms": gw.median - direct.median,
                },
            )
        )
    ctx.add(
        Row(
            "gw.sse_tokens",
            "SSE token chunks/s through the gateway vs the direct job's token frames/s",
            Figure.of(tokens["gateway"], "tokens/s"),
            Figure.of(tokens["direct"], "tokens/s"),
            "the same streamed job, FabstirClient directly",
            Target(">=", 0.5, text=">= 50% of direct"),
            better="higher",
        )
    )
    ctx.add(
        Row(
            "gw.concurrent_streams.errors",
            f"{clients} concurrent streaming clients through the gateway: errors",
            Figure(unit="errors", median=len(errors), min=len(errors), max=len(errors), n=1),
            target=Target("<=", 0, on="value", text="no errors"),
            extra={"clients": clients, "wall_s": round(concurrent_s, 3)},
        )
    )
    ctx.add(
        Row(
            "gw.concurrent_streams.latency",
            f"{clients} concurrent streaming clients: time to [DONE] per client",
            Figure.of(latencies, "ms", tail=True),
        )
    )
