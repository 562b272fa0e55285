"""The rpc layer (protocols/rpc.py) over an in-memory socket pair: no daemon involved.

``DaemonStream`` wraps any anyio byte stream; here one end of a ``socket.socketpair()`` plays
the daemon's stream pipe and the other end is the remote peer writing raw bytes.
"""

from __future__ import annotations

import json
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import anyio
import anyio.abc
import pytest

from fabstir_sidecar.backend import BackendError, Completion, StreamEnd, TokenStream
from fabstir_sidecar.core.errors import (
    FabstirTimeoutError,
    FrameTooLargeError,
    MalformedMessageError,
    MessageTooLargeError,
    RemoteError,
    StreamClosedError,
)
from fabstir_sidecar.daemon.stream import DaemonStream
from fabstir_sidecar.host.backends.echo import EchoBackend
from fabstir_sidecar.protocols import ids
from fabstir_sidecar.protocols.job import JobEvent, job_handler
from fabstir_sidecar.rpc.client import call
from fabstir_sidecar.rpc.exchange import Exchange
from fabstir_sidecar.rpc.frames import read_frame, write_frame
from fabstir_sidecar.rpc.limits import RpcLimits
from fabstir_sidecar.rpc.server import serve_requests
from fabstir_sidecar.wire.codes import REJECTED_MODEL_NOT_SERVED, Rejection
from fabstir_sidecar.wire.framing import encode_frame, encode_json_frame
from fabstir_sidecar.wire.json_codec import MAX_MESSAGE_SIZE
from fabstir_sidecar.wire.messages import BadRequestError, JobRequest
from tests.frames import split_frames

pytestmark = pytest.mark.anyio

PEER = "12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXTN"
DEADLINE = 5.0
TWO_MIB_HEADER = (2 * 1024 * 1024).to_bytes(4, "big")


@asynccontextmanager
async def stream_pair(
    protocol: str = ids.JOB,
) -> AsyncIterator[tuple[DaemonStream, anyio.abc.SocketStream]]:
    """``(local DaemonStream, raw remote end)`` over a connected unix socket pair."""
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    local = await anyio.abc.UNIXSocketStream.from_socket(a)
    remote = await anyio.abc.UNIXSocketStream.from_socket(b)
    stream = DaemonStream(local, peer_id=PEER, protocol=protocol)
    try:
        yield stream, remote
    finally:
        await stream.aclose()
        await remote.aclose()


async def read_all(remote: anyio.abc.SocketStream) -> bytes:
    data = bytearray()
    while True:
        try:
            data += await remote.receive()
        except (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError):
            return bytes(data)


def frames_of(data: bytes) -> list[dict[str, Any]]:
    payloads, pending = split_frames(data)
    assert not pending, f"trailing partial frame in {data!r}"
    return [json.loads(payload) for payload in payloads]


# --------------------------------------------------------------------- read/write


async def test_round_trip_of_several_frames() -> None:
    messages = [
        {"type": "job_token", "job_id": "j", "text": "héllo 你好 🚀"},
        {"type": "job_result", "job_id": "j", "content": "x" * 10_000, "tokens_used": 1},
        {"type": "error", "code": "internal", "message": ""},
    ]
    with anyio.fail_after(DEADLINE):
        async with stream_pair() as (writer, wire), stream_pair() as (reader, remote):
            for message in messages:
                await write_frame(writer, message)
            await writer.aclose()
            sent = await read_all(wire)
            assert sent == b"".join(encode_json_frame(m) for m in messages)

            async def feed() -> None:  # what the writer put on the wire, in odd-sized chunks
                for i in range(0, len(sent), 997):
                    await remote.send(sent[i : i + 997])

            async with anyio.create_task_group() as tg:
                tg.start_soon(feed)
                assert [await read_frame(reader) for _ in messages] == messages


async def test_write_frame_writes_exactly_one_frame() -> None:
    with anyio.fail_after(DEADLINE):
        async with stream_pair() as (stream, remote):
            await write_frame(stream, {"type": "status_request"})
            await stream.aclose()
            assert await read_all(remote) == encode_json_frame({"type": "status_request"})


async def test_write_frame_over_the_cap_sends_nothing() -> None:
    with anyio.fail_after(DEADLINE):
        async with stream_pair() as (stream, remote):
            with pytest.raises(MessageTooLargeError):
                await write_frame(stream, {"text": "x" * 200}, max_size=100)
            await stream.aclose()
            assert await read_all(remote) == b""


async def test_oversized_header_raises_before_the_body_is_consumed() -> None:
    body = b'{"never":"read"}'
    with anyio.fail_after(DEADLINE):
        async with stream_pair() as (stream, remote):
            await remote.send(TWO_MIB_HEADER + body)
            with pytest.raises(FrameTooLargeError) as info:
                await read_frame(stream)
            assert info.value.size == 2 * 1024 * 1024
            assert info.value.limit == MAX_MESSAGE_SIZE
            # Every body byte is still unconsumed.
            assert await stream.receive_some() == body


async def test_oversized_header_alone_is_refused_without_waiting_for_a_body() -> None:
    with anyio.fail_after(DEADLINE):
        async with stream_pair() as (stream, remote):
            await remote.send(TWO_MIB_HEADER)  # and never anything else, never EOF
            with anyio.fail_after(1.0), pytest.raises(FrameTooLargeError):
                await read_frame(stream)


async def test_custom_max_size_is_applied_to_the_header() -> None:
    with anyio.fail_after(DEADLINE):
        async with stream_pair() as (stream, remote):
            await remote.send((101).to_bytes(4, "big"))
            with pytest.raises(FrameTooLargeError):
                await read_frame(stream, max_size=100)


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param((100).to_bytes(4, "big") + b"0123456789", id="body-cut"),
        pytest.param(b"\x00\x00", id="header-cut"),
        pytest.param(b"", id="nothing"),
    ],
)
async def test_truncated_frame_is_stream_closed(raw: bytes) -> None:
    with anyio.fail_after(DEADLINE):
        async with stream_pair() as (stream, remote):
            if raw:
                await remote.send(raw)
            await remote.send_eof()
            with pytest.raises(StreamClosedError):
                await read_frame(stream)


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b"\xff\xfe{}", id="not-utf8"),
        pytest.param(b"{not json", id="not-json"),
        pytest.param(b"[1,2]", id="array"),
        pytest.param(b"", id="empty"),
    ],
)
async def test_malformed_frame_body_is_malformed_message(body: bytes) -> None:
    with anyio.fail_after(DEADLINE):
        async with stream_pair() as (stream, remote):
            await remote.send(encode_frame(body))
            with pytest.raises(MalformedMessageError):
                await read_frame(stream)


# ----------------------------------------------------------------- serve_requests

Handler = Callable[[Exchange], Awaitable[None]]


async def serve_once(
    handler: Handler,
    request: bytes | None,
    *,
    limits: RpcLimits | None = None,
    keep_open: bool = True,
) -> tuple[list[dict[str, Any]], BaseException | None]:
    """Run one server-side exchange; return the frames the remote got and what escaped."""
    on_stream = serve_requests(handler, limits or RpcLimits(read_timeout=2.0, total_timeout=3.0))
    escaped: list[BaseException] = []

    async def server(stream: DaemonStream) -> None:
        try:
            await on_stream(stream)
        except Exception as exc:
            escaped.append(exc)
        finally:
            await stream.aclose()  # as HandlerServer does after the handler

    async with stream_pair() as (stream, remote), anyio.create_task_group() as tg:
        tg.start_soon(server, stream)
        if request is not None:
            await remote.send(request)
        if not keep_open:
            await remote.send_eof()
        data = await read_all(remote)
    return frames_of(data), (escaped[0] if escaped else None)


async def reply_ok(exchange: Exchange) -> None:
    await exchange.send({"type": "ok", "echo": exchange.request, "peer": exchange.peer_id})


async def test_serve_answers_a_well_formed_request() -> None:
    seen: list[Exchange] = []

    async def handler(exchange: Exchange) -> None:
        seen.append(exchange)
        await reply_ok(exchange)
        await exchange.send({"type": "second"})

    with anyio.fail_after(DEADLINE):
        frames, escaped = await serve_once(handler, encode_json_frame({"type": "ping", "n": 1}))
    assert escaped is None
    assert frames == [
        {"type": "ok", "echo": {"type": "ping", "n": 1}, "peer": PEER},
        {"type": "second"},
    ]
    assert seen[0].protocol == ids.JOB
    assert seen[0].sent == 2


@pytest.mark.parametrize("requester_closes", [True, False])
async def test_serve_lets_the_requester_close_first_within_the_linger(
    requester_closes: bool,
) -> None:
    """After answering, the server keeps its end open until the requester closed (so p2pd
    never tears the stream down under an unread answer), at most ``close_linger``."""
    on_stream = serve_requests(reply_ok, RpcLimits(close_linger=0.5))
    served_at: list[float] = []

    async def server(stream: DaemonStream) -> None:
        await on_stream(stream)
        served_at.append(anyio.current_time())
        await stream.aclose()

    with anyio.fail_after(DEADLINE):
        async with stream_pair() as (stream, remote), anyio.create_task_group() as tg:
            tg.start_soon(server, stream)
            await remote.send(encode_json_frame({"type": "ping"}))
            header = await remote.receive(4)
            assert len(header) == 4
            await anyio.sleep(0.1)
            assert not served_at  # answered, but still waiting for us
            t0 = anyio.current_time()
            if requester_closes:
                await remote.aclose()
            else:
                with pytest.raises(anyio.EndOfStream):
                    while True:  # the rest of the frame, then the server's close
                        await remote.receive()
    waited = served_at[0] - t0
    assert waited < 0.1 if requester_closes else 0.2 < waited < 0.6


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b"{bad json", id="bad-json"),
        pytest.param(b"\xc3\x28", id="bad-utf8"),
        pytest.param(b"[1,2]", id="not-an-object"),
        pytest.param(b'"text"', id="a-string"),
    ],
)
async def test_serve_maps_an_undecodable_request_to_bad_request(body: bytes) -> None:
    called = False

    async def handler(exchange: Exchange) -> None:
        nonlocal called
        called = True

    with anyio.fail_after(DEADLINE):
        frames, escaped = await serve_once(handler, encode_frame(body))
    assert escaped is None
    assert not called
    assert len(frames) == 1
    assert frames[0]["type"] == "error"
    assert frames[0]["code"] == "bad_request"
    assert "job_id" not in frames[0]
    assert frames[0]["message"]


async def test_serve_maps_an_oversized_header_to_too_large() -> None:
    async def handler(exchange: Exchange) -> None:
        raise AssertionError("handler must not run")

    with anyio.fail_after(DEADLINE):
        # Only the header: the answer must come without the 2 MiB body ever arriving.
        frames, escaped = await serve_once(handler, TWO_MIB_HEADER)
    assert escaped is None
    assert [f["code"] for f in frames] == ["too_large"]
    assert "2097152" in frames[0]["message"]


async def test_serve_maps_a_handler_crash_to_internal_and_echoes_the_job_id() -> None:
    async def handler(exchange: Exchange) -> None:
        exchange.job_id = "job-7"
        raise RuntimeError("kaboom")

    with anyio.fail_after(DEADLINE):
        frames, escaped = await serve_once(handler, encode_json_frame({"type": "x"}))
    assert escaped is None
    assert frames == [
        {"type": "error", "job_id": "job-7", "code": "internal", "message": "RuntimeError: kaboom"}
    ]


async def test_serve_maps_bad_request_error_with_the_job_id() -> None:
    async def handler(exchange: Exchange) -> None:
        exchange.job_id = "job-8"
        raise BadRequestError("job_request.prompt", "missing required field")

    with anyio.fail_after(DEADLINE):
        frames, _ = await serve_once(handler, encode_json_frame({"type": "job_request"}))
    assert len(frames) == 1
    assert frames[0]["code"] == "bad_request"
    assert frames[0]["job_id"] == "job-8"
    assert "job_request.prompt" in frames[0]["message"]


@pytest.mark.parametrize(
    "partial",
    [pytest.param(b"", id="nothing"), pytest.param(b"\x00\x00\x00\x10{", id="half-frame")],
)
async def test_serve_maps_a_stalled_request_to_timeout(partial: bytes) -> None:
    async def handler(exchange: Exchange) -> None:
        raise AssertionError("handler must not run")

    limits = RpcLimits(read_timeout=0.3, total_timeout=5.0)
    with anyio.fail_after(DEADLINE):
        started = anyio.current_time()
        frames, escaped = await serve_once(handler, partial or None, limits=limits)
        elapsed = anyio.current_time() - started
    assert escaped is None
    assert [f["code"] for f in frames] == ["timeout"]
    assert 0.25 <= elapsed < 2.0


async def test_serve_maps_a_slow_handler_to_timeout_with_the_job_id() -> None:
    async def handler(exchange: Exchange) -> None:
        exchange.job_id = "slow-1"
        await exchange.send({"type": "job_token", "job_id": "slow-1", "text": "a"})
        await anyio.sleep(30)

    limits = RpcLimits(read_timeout=1.0, total_timeout=0.3)
    with anyio.fail_after(DEADLINE):
        frames, escaped = await serve_once(handler, encode_json_frame({"type": "x"}), limits=limits)
    assert escaped is None
    assert [f["type"] for f in frames] == ["job_token", "error"]
    assert frames[1]["code"] == "timeout"
    assert frames[1]["job_id"] == "slow-1"


async def test_serve_lets_stream_closed_escape_to_the_handler_server() -> None:
    async def handler(exchange: Exchange) -> None:
        raise StreamClosedError("peer went away")

    with anyio.fail_after(DEADLINE):
        frames, escaped = await serve_once(handler, encode_json_frame({"type": "x"}))
    assert frames == []
    assert isinstance(escaped, StreamClosedError)


async def test_serve_truncated_request_is_dropped_without_an_answer() -> None:
    async def handler(exchange: Exchange) -> None:
        raise AssertionError("handler must not run")

    with anyio.fail_after(DEADLINE):
        frames, escaped = await serve_once(
            handler, (100).to_bytes(4, "big") + b"0123456789", keep_open=False
        )
    assert frames == []
    assert escaped is None  # counted and summarised in the log, not one line per stream


# --------------------------------------------------------------- the job handler


class FakeHost:
    """The JobHost protocol, with an echo backend and a record of what happened."""

    def __init__(self, backend: Any = None, *, models: tuple[str, ...] = ("m1",)) -> None:
        self.backend = backend or EchoBackend()
        self.models = models
        self.active = 0
        self.events: list[JobEvent] = []

    def try_admit(self, model: str, peer: str, protocol: str) -> Rejection | None:
        if model not in self.models:
            return Rejection(REJECTED_MODEL_NOT_SERVED, f"model {model!r} not served")
        self.active += 1
        return None

    def release(self, peer: str, seconds: float) -> None:
        self.active -= 1

    def report(self, event: JobEvent) -> None:
        self.events.append(event)


def job_frame(**fields: Any) -> bytes:
    return encode_json_frame({"type": "job_request", **fields})


async def test_job_request_missing_prompt_is_bad_request_echoing_the_job_id() -> None:
    host = FakeHost()
    with anyio.fail_after(DEADLINE):
        frames, _ = await serve_once(job_handler(host), job_frame(job_id="j-1", model="m1"))
    assert len(frames) == 1
    assert frames[0]["type"] == "error"
    assert frames[0]["code"] == "bad_request"
    assert frames[0]["job_id"] == "j-1"
    assert "prompt" in frames[0]["message"]
    assert host.active == 0 and host.events == []


async def test_job_request_with_an_unusable_job_id_is_bad_request_without_one() -> None:
    host = FakeHost()
    with anyio.fail_after(DEADLINE):
        frames, _ = await serve_once(
            job_handler(host), job_frame(job_id="x" * 129, model="m1", prompt="p")
        )
    assert [f["code"] for f in frames] == ["bad_request"]
    assert "job_id" not in frames[0]


async def test_job_streamed_tokens_then_result_and_unknown_fields_ignored() -> None:
    host = FakeHost()
    with anyio.fail_after(DEADLINE):
        frames, _ = await serve_once(
            job_handler(host),
            job_frame(job_id="j-2", model="m1", prompt="a b", stream=True, future_field={"x": 1}),
        )
    assert frames == [
        {"type": "job_token", "job_id": "j-2", "text": "echo:"},
        {"type": "job_token", "job_id": "j-2", "text": " a"},
        {"type": "job_token", "job_id": "j-2", "text": " b"},
        {
            "type": "job_result",
            "job_id": "j-2",
            "content": "echo: a b",
            "tokens_used": 3,
            "finish_reason": "stop",
        },
    ]
    assert host.active == 0
    assert [e.outcome for e in host.events] == ["result"]
    assert host.events[0].peer_id == PEER


async def test_job_backend_failure_mid_stream_is_internal_and_releases_the_slot() -> None:
    class FailingMidStream:
        name = "failing"

        def stream(self, request: JobRequest) -> TokenStream:
            async def items() -> AsyncIterator[str | StreamEnd]:
                yield "first"
                raise BackendError("backend died mid-stream")

            return TokenStream(items())  # type: ignore[arg-type]

        async def complete(self, request: JobRequest) -> Completion:
            raise AssertionError("not used")

        async def aclose(self) -> None:
            pass

    host = FakeHost(FailingMidStream())
    with anyio.fail_after(DEADLINE):
        frames, _ = await serve_once(
            job_handler(host), job_frame(job_id="j-3", model="m1", prompt="p", stream=True)
        )
    assert [f["type"] for f in frames] == ["job_token", "error"]
    assert frames[1]["code"] == "internal"
    assert frames[1]["job_id"] == "j-3"
    assert "mid-stream" in frames[1]["message"]
    assert host.active == 0
    assert [e.outcome for e in host.events] == ["error"]


async def test_job_for_an_unserved_model_is_rejected_without_taking_a_slot() -> None:
    host = FakeHost()
    with anyio.fail_after(DEADLINE):
        frames, _ = await serve_once(
            job_handler(host), job_frame(job_id="j-4", model="other", prompt="p")
        )
    assert len(frames) == 1
    assert frames[0]["type"] == "job_rejected"
    assert frames[0]["job_id"] == "j-4"
    assert "other" in frames[0]["reason"]
    assert host.active == 0
    assert [e.outcome for e in host.events] == ["rejected"]


# ------------------------------------------------------------------ client side


class FakeControl:
    """Only ``open_stream``: hands out the local end of a socket pair."""

    def __init__(self, stream: DaemonStream) -> None:
        self.stream = stream
        self.opened: list[tuple[str, list[str]]] = []

    async def open_stream(
        self, peer_id: str, protocols: list[str], *, timeout: float | None = None
    ) -> DaemonStream:
        self.opened.append((peer_id, list(protocols)))
        return self.stream


async def test_call_writes_one_request_and_returns_the_answer() -> None:
    with anyio.fail_after(DEADLINE):
        async with stream_pair(ids.STATUS) as (stream, remote):
            control = FakeControl(stream)

            async def responder() -> bytes:
                data = b""
                while not (got := split_frames(data)[0]):
                    data += await remote.receive()
                await remote.send(encode_json_frame({"type": "status", "ok": True}))
                return got[0]

            async with anyio.create_task_group() as tg:
                received: list[bytes] = []

                async def run_responder() -> None:
                    received.append(await responder())

                tg.start_soon(run_responder)
                answer = await call(
                    control,  # type: ignore[arg-type]
                    PEER,
                    ids.STATUS,
                    {"type": "status_request"},
                    timeout=2.0,
                )
    assert answer == {"type": "status", "ok": True}
    assert json.loads(received[0]) == {"type": "status_request"}
    assert control.opened == [(PEER, [ids.STATUS])]


async def test_call_turns_an_error_frame_into_remote_error() -> None:
    with anyio.fail_after(DEADLINE):
        async with stream_pair(ids.STATUS) as (stream, remote):
            await remote.send(
                encode_json_frame({"type": "error", "code": "bad_request", "message": "nope"})
            )
            with pytest.raises(RemoteError) as info:
                await call(FakeControl(stream), PEER, ids.STATUS, {"type": "x"}, timeout=2.0)  # type: ignore[arg-type]
    assert info.value.code == "bad_request"
    assert info.value.remote_message == "nope"
    assert info.value.peer_id == PEER


async def test_call_times_out_when_no_answer_comes() -> None:
    with anyio.fail_after(DEADLINE):
        async with stream_pair(ids.STATUS) as (stream, _remote):
            started = anyio.current_time()
            with pytest.raises(FabstirTimeoutError):
                await call(FakeControl(stream), PEER, ids.STATUS, {"type": "x"}, timeout=0.3)  # type: ignore[arg-type]
            assert anyio.current_time() - started < 2.0


async def test_call_refuses_an_oversized_request_before_opening_a_stream() -> None:
    with anyio.fail_after(DEADLINE):
        async with stream_pair(ids.STATUS) as (stream, _remote):
            control = FakeControl(stream)
            with pytest.raises(MessageTooLargeError):
                await call(
                    control,  # type: ignore[arg-type]
                    PEER,
                    ids.STATUS,
                    {"text": "x" * MAX_MESSAGE_SIZE},
                    timeout=1.0,
                )
            assert control.opened == []


# ------------------------------------------------------------------ batched frames


async def test_batched_frames_arrive_in_order_and_coalesced() -> None:
    async with stream_pair() as (stream, remote):
        exchange = Exchange(stream, {}, MAX_MESSAGE_SIZE)
        with anyio.fail_after(DEADLINE):
            async with exchange.batched(delay=0.5) as out:
                for i in range(200):
                    await out.send({"type": "job_token", "n": i})
                # a 0.5 s delay and < 64 KiB: nothing written yet
                with anyio.move_on_after(0.05):
                    assert not await remote.receive()
            await exchange.send({"type": "job_result"})  # after the block: after every token
            await stream.aclose()
            frames = frames_of(await read_all(remote))
    assert [f.get("n") for f in frames[:-1]] == list(range(200))
    assert frames[-1] == {"type": "job_result"}
    assert exchange.sent == 201


async def test_a_lone_batched_frame_is_written_within_the_delay() -> None:
    """A slow producer's token is not held back until the next one comes."""
    async with stream_pair() as (stream, remote):
        exchange = Exchange(stream, {}, MAX_MESSAGE_SIZE)
        with anyio.fail_after(DEADLINE):
            async with exchange.batched(delay=0.02) as out:
                t0 = anyio.current_time()
                await out.send({"type": "job_token", "n": 1})
                header = await remote.receive(4)  # while the producer is still "thinking"
                waited = anyio.current_time() - t0
                assert len(header) == 4 and waited < 0.5
                await out.send({"type": "job_token", "n": 2})
            await stream.aclose()
            rest = await read_all(remote)
    assert [f["n"] for f in frames_of(header + rest)] == [1, 2]


async def test_a_failing_producer_still_flushes_its_frames_and_its_error_is_unwrapped() -> None:
    async with stream_pair() as (stream, remote):
        exchange = Exchange(stream, {}, MAX_MESSAGE_SIZE)
        with anyio.fail_after(DEADLINE), pytest.raises(RuntimeError, match="backend died"):
            async with exchange.batched(delay=5.0) as out:
                await out.send({"type": "job_token", "n": 1})
                raise RuntimeError("backend died")
        await stream.aclose()
        assert [f["n"] for f in frames_of(await read_all(remote))] == [1]


async def test_batched_sends_report_a_requester_that_went_away() -> None:
    async with stream_pair() as (stream, remote):
        exchange = Exchange(stream, {}, MAX_MESSAGE_SIZE)
        await remote.aclose()
        with anyio.fail_after(DEADLINE), pytest.raises(StreamClosedError):
            async with exchange.batched(delay=0.001, max_pending=1024) as out:
                for i in range(10_000):
                    await out.send({"type": "job_token", "n": i, "pad": "x" * 100})
