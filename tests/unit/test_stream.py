"""DaemonStream reads over a real unix socket pair: exact reads of small and large bodies,
leftover bytes kept for the next read, and a short stream reported, not hung on."""

from __future__ import annotations

import os

import anyio
import pytest

from fabstir_sidecar.core.errors import StreamClosedError

from .test_rpc import stream_pair

pytestmark = pytest.mark.anyio

MIB = 1 << 20


async def _send_in_pieces(remote: anyio.abc.SocketStream, data: bytes, piece: int) -> None:
    for start in range(0, len(data), piece):
        await remote.send(data[start : start + piece])


@pytest.mark.parametrize("piece", [1000, 65_536, 300_000, 3 * MIB])
async def test_large_exact_reads_keep_the_following_bytes(piece: int) -> None:
    body_a, body_b, tail = os.urandom(MIB), os.urandom(MIB - 7), b"tail"
    async with stream_pair() as (stream, remote), anyio.create_task_group() as tg:
        tg.start_soon(_send_in_pieces, remote, b"hd" + body_a + body_b + tail, piece)
        assert await stream.receive_exactly(2) == b"hd"
        assert await stream.receive_exactly(MIB) == body_a
        assert await stream.receive_exactly(MIB - 7) == body_b
        assert await stream.receive_exactly(4) == tail


@pytest.mark.parametrize("size", [10, 400_000])
async def test_a_stream_ending_mid_body_is_a_typed_error(size: int) -> None:
    async def send_short_then_eof(remote: anyio.abc.SocketStream) -> None:
        await remote.send(b"x" * (size - 1))
        await remote.send_eof()

    async with stream_pair() as (stream, remote), anyio.create_task_group() as tg:
        tg.start_soon(send_short_then_eof, remote)
        with anyio.fail_after(5), pytest.raises(StreamClosedError, match=f"of {size} bytes"):
            await stream.receive_exactly(size)
        assert await stream.receive_some(size) == b"x" * (size - 1)


async def test_buffered_frames_are_taken_without_waiting_and_partial_ones_left() -> None:
    from fabstir_sidecar.core.errors import FrameTooLargeError
    from fabstir_sidecar.rpc.frames import read_buffered_frame, read_frame
    from fabstir_sidecar.wire.framing import encode_json_frame

    one, two = encode_json_frame({"n": 1}), encode_json_frame({"n": 2})
    async with stream_pair() as (stream, remote):
        assert read_buffered_frame(stream) is None  # nothing buffered: the caller must wait
        await remote.send(one + two[:3])
        with anyio.fail_after(5):
            assert await read_frame(stream) == {"n": 1}  # the socket read buffers more
            while stream.buffered < 3:
                await stream._fill()
        assert read_buffered_frame(stream) is None  # a partial header stays buffered
        await remote.send(two[3:])
        with anyio.fail_after(5):
            assert await read_frame(stream) == {"n": 2}
        await remote.send((2 * MIB).to_bytes(4, "big") + b"x" * 10)
        with anyio.fail_after(5):
            while stream.buffered < 14:
                await stream._fill()
        with pytest.raises(FrameTooLargeError):
            read_buffered_frame(stream)
