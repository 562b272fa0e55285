"""Throughput on one stream: 1 MiB frames (our framed codec over DaemonStream vs raw daemon
bulk vs plain TCP), and job_token frames of a streamed job (EchoBackend, long prompt)."""

from __future__ import annotations

import struct
import time
import uuid
from collections.abc import Awaitable, Callable

import anyio.abc

from fabstir_sidecar.client import FabstirClient, RetryConfig
from fabstir_sidecar.daemon.stream import DaemonStream
from fabstir_sidecar.rpc.frames import write_frame
from fabstir_sidecar.wire.framing import encode_frame, encode_json_frame
from fabstir_sidecar.wire.json_codec import MAX_MESSAGE_SIZE
from fabstir_sidecar.wire.messages import JobToken

from . import refs
from .common import Batch, Ctx, host_process, interleaved
from .hostproc import MODEL
from .procs import progress
from .stats import Figure, Row, Target

MIB = 1 << 20

# Opens a reference connection: the raw daemon stream or plain TCP, with its reader.
Connect = Callable[[], Awaitable[tuple[anyio.abc.SocketStream, refs.FrameReader]]]


async def run(ctx: Ctx) -> None:
    frames = ctx.pick(8, 64)  # 1 MiB frames per trial
    rounds = ctx.pick(2, 7)
    words = ctx.pick(500, 20_000)  # tokens per streamed job
    token_rounds = ctx.pick(2, 7)
    payload = b"x" * MAX_MESSAGE_SIZE  # the largest frame the cap allows: exactly 1 MiB
    raw_frame = len(payload).to_bytes(4, "big") + payload
    json_message = {"type": "blob", "data": "x" * (MAX_MESSAGE_SIZE - 64)}

    async with (
        host_process(ctx, raw=True, name="tput-host", profile_as="throughput") as host,
        ctx.node() as node,
    ):
        ctx.track(node)
        await node.connect_to_peer(host.addr)
        peer = host.peer_id
        raw = refs.RawDaemonClient(refs.node_control_socket(node))
        assert host.tcp_port is not None
        port = host.tcp_port

        def ours_via(protocol: str, send: Callable[[DaemonStream], Awaitable[None]]) -> Batch:
            """Our sink: ``frames`` frames, each written by ``send``, then the 1-byte ack."""

            async def batch(_: int) -> list[float]:
                stream = await node.control.open_stream(peer, [protocol])
                try:
                    t0 = time.perf_counter()
                    await stream.send(struct.pack(">Q", frames))
                    for _ in range(frames):
                        await send(stream)
                    await stream.receive_exactly(1)
                    return [frames / (time.perf_counter() - t0)]
                finally:
                    await stream.aclose()

            return batch

        def bulk_via(connect: Connect) -> Batch:
            """The reference sink: raw 1 MiB frames, then the 1-byte ack."""

            async def batch(_: int) -> list[float]:
                sock, reader = await connect()
                try:
                    t0 = time.perf_counter()
                    await sock.send(struct.pack(">Q", frames * len(raw_frame)))
                    for _ in range(frames):
                        await sock.send(raw_frame)
                    await reader.read_exactly(1)
                    return [frames / (time.perf_counter() - t0)]
                finally:
                    await sock.aclose()

            return batch

        progress(f"throughput: {rounds} rounds x {frames} MiB per method")
        bulk = await interleaved(
            {
                "ours": ours_via(refs.FRAMED_SINK, lambda s: s.send(encode_frame(payload))),
                "ours_json": ours_via(refs.JSON_SINK, lambda s: write_frame(s, json_message)),
                "raw": bulk_via(lambda: raw.open_reader(peer, refs.SINK)),
                "tcp": bulk_via(lambda: refs.open_tcp(port, b"S")),
            },
            rounds=rounds,
            per_round=1,
            warmup=1,
        )

        # ---- streamed job tokens
        client = FabstirClient(node, retry=RetryConfig.none())
        prompt = " ".join(f"w{i % 1000}" for i in range(words))
        token_size = (
            len(encode_json_frame(JobToken(job_id=uuid.uuid4().hex, text=" w123").to_json())) - 4
        )
        count = words + 1  # "echo:" + one token per word

        async def ours_tokens(_: int) -> list[float]:
            t0 = time.perf_counter()
            got = 0
            stream = client.stream_job(peer, MODEL, prompt, max_tokens=count)
            async for _token in stream:
                got += 1
            elapsed = time.perf_counter() - t0
            if got != count or stream.result is None:
                raise RuntimeError(f"streamed job: {got} tokens, expected {count}")
            return [got / elapsed]

        def tokens_via(connect: Connect) -> Batch:
            """The reference token stream: ``count`` frames of the job_token size."""

            async def batch(_: int) -> list[float]:
                sock, reader = await connect()
                try:
                    t0 = time.perf_counter()
                    await sock.send(struct.pack(">II", count, token_size))
                    await reader.count_frames(count)
                    return [count / (time.perf_counter() - t0)]
                finally:
                    await sock.aclose()

            return batch

        token_batches: dict[str, Batch] = {
            "ours": ours_tokens,
            "raw": tokens_via(lambda: raw.open_reader(peer, refs.TOKENS)),
            "tcp": tokens_via(lambda: refs.open_tcp(port, b"T")),
        }
        progress(f"throughput: {token_rounds} streamed jobs of {count} tokens per method")
        toks = await interleaved(token_batches, rounds=token_rounds, per_round=1, warmup=1)

    fig = {k: Figure.of(v, "frames/s") for k, v in bulk.items()}
    mb = {k: Figure.of([x * MAX_MESSAGE_SIZE / 1e6 for x in v], "MB/s") for k, v in bulk.items()}
    extra = {
        "frame_bytes": MAX_MESSAGE_SIZE,
        "frames_per_trial": frames,
        "mb_per_s": {k: f.median for k, f in mb.items()},
    }
    ctx.add(
        Row(
            "tput.frames_1mib",
            "1 MiB frames/s on one stream, our framed codec over DaemonStream",
            fig["ours"],
            fig["raw"],
            "raw daemon bulk, p2pclient",
            Target(">=", 0.6, text=">= 60% of raw daemon bulk"),
            better="higher",
            extra=extra,
        )
    )
    ctx.add(
        Row(
            "tput.json_frames_1mib",
            "1 MiB JSON frames/s (rpc.write_frame / rpc.read_frame: encode + decode)",
            fig["ours_json"],
            fig["raw"],
            "raw daemon bulk, p2pclient",
            better="higher",
        )
    )
    ctx.add(
        Row(
            "tput.raw_bulk.vs_tcp",
            "raw daemon bulk (1 MiB writes) vs plain TCP",
            mb["raw"],
            mb["tcp"],
            "plain TCP",
            better="higher",
        )
    )
    tfig = {k: Figure.of(v, "frames/s") for k, v in toks.items()}
    ctx.add(
        Row(
            "tput.job_tokens",
            f"job_token frames/s in one streamed job ({count} tokens, EchoBackend)",
            tfig["ours"],
            tfig["raw"],
            f"raw daemon, {token_size}-byte frames",
            Target(">=", 20_000, on="value", text=">= 20,000 frames/s"),
            better="higher",
            extra={"tokens": count, "token_frame_bytes": token_size + 4},
        )
    )
    ctx.add(
        Row(
            "tput.job_tokens.vs_tcp",
            "job_token frames/s vs plain TCP, same frame sizes",
            tfig["ours"],
            tfig["tcp"],
            "plain TCP",
            better="higher",
        )
    )
