"""Reading and writing one length-prefixed JSON frame on a daemon stream (size-capped)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fabstir_sidecar.daemon.stream import DaemonStream
from fabstir_sidecar.wire.framing import HEADER_SIZE, encode_json_frame, parse_header
from fabstir_sidecar.wire.json_codec import MAX_MESSAGE_SIZE, decode_json_object


async def read_frame(stream: DaemonStream, *, max_size: int = MAX_MESSAGE_SIZE) -> dict[str, Any]:
    """One JSON-object frame. Over ``max_size``: FrameTooLargeError before the body."""
    length = parse_header(await stream.receive_exactly(HEADER_SIZE), max_size=max_size)
    return decode_json_object(await stream.receive_exactly(length), max_size=max_size)


def read_buffered_frame(
    stream: DaemonStream, *, max_size: int = MAX_MESSAGE_SIZE
) -> dict[str, Any] | None:
    """The next frame if it is already wholly buffered, else None (nothing consumed).

    Streamed tokens arrive many frames per socket read: taking them without an await (and
    without a deadline scope per frame) is what makes a token stream fast.
    """
    if stream.buffered < HEADER_SIZE:
        return None
    length = parse_header(stream.peek_buffered(HEADER_SIZE), max_size=max_size)
    if stream.buffered < HEADER_SIZE + length:
        return None
    stream.take_buffered(HEADER_SIZE)
    return decode_json_object(stream.take_buffered(length), max_size=max_size)


async def write_frame(
    stream: DaemonStream, message: Mapping[str, Any], *, max_size: int = MAX_MESSAGE_SIZE
) -> None:
    await stream.send(encode_json_frame(dict(message), max_size=max_size))
