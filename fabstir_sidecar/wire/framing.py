"""Length-prefixed frames: a 4-byte big-endian unsigned length N, then N bytes.

The size cap is enforced on the header alone, so a reader refuses an oversized
frame before reading (or buffering) a single byte of its body. Framing allows a
zero-length frame; it is the JSON layer that rejects its empty payload.
"""

from __future__ import annotations

from typing import Any

from fabstir_sidecar.core.errors import FrameTooLargeError, MessageTooLargeError
from fabstir_sidecar.wire.json_codec import MAX_MESSAGE_SIZE, BytesLike, encode_json

__all__ = [
    "HEADER_SIZE",
    "MAX_FRAME_LENGTH",
    "encode_frame",
    "encode_json_frame",
    "parse_header",
]

HEADER_SIZE = 4
MAX_FRAME_LENGTH = 0xFFFF_FFFF
"""The largest length a 4-byte header can announce; ``max_size`` may not exceed it."""


def _check_max_size(max_size: int) -> None:
    if not 0 <= max_size <= MAX_FRAME_LENGTH:
        raise ValueError(f"max_size must be between 0 and {MAX_FRAME_LENGTH}, got {max_size}")


def encode_frame(payload: BytesLike, *, max_size: int = MAX_MESSAGE_SIZE) -> bytes:
    """Header + ``payload``; :class:`MessageTooLargeError` if it is over ``max_size``."""
    _check_max_size(max_size)
    size = len(payload)
    if size > max_size:
        raise MessageTooLargeError(size, max_size)
    return size.to_bytes(HEADER_SIZE, "big") + payload


def encode_json_frame(value: Any, *, max_size: int = MAX_MESSAGE_SIZE) -> bytes:
    """One frame holding the compact UTF-8 JSON of ``value``."""
    return encode_frame(encode_json(value, max_size=max_size), max_size=max_size)


def parse_header(header: BytesLike, *, max_size: int = MAX_MESSAGE_SIZE) -> int:
    """The body length announced by a 4-byte header.

    Raises :class:`FrameTooLargeError` when it exceeds ``max_size``, and
    ``ValueError`` when ``header`` is not exactly 4 bytes (a caller bug: a short
    read is the stream layer's to report).
    """
    _check_max_size(max_size)
    if len(header) != HEADER_SIZE:
        raise ValueError(f"a frame header is {HEADER_SIZE} bytes, got {len(header)}")
    size = int.from_bytes(header, "big")
    if size > max_size:
        raise FrameTooLargeError(size, max_size)
    return size
