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
    "FrameDecoder",
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


class FrameDecoder:
    """Incremental decoder for a stream that arrives in arbitrary chunks.

    :meth:`feed` returns the payloads that the chunk completes, in order. It holds at
    most one partial frame (at most ``max_size`` body bytes plus a partial header): an
    oversized header raises :class:`FrameTooLargeError` as soon as its 4 bytes are in,
    without buffering anything after it. Errors are sticky: the stream is unusable and
    every later :meth:`feed` raises the same error. Payloads completed earlier in the
    chunk that carried the bad header are dropped with it.
    """

    __slots__ = ("_body", "_error", "_header", "_length", "_max_size")

    def __init__(self, *, max_size: int = MAX_MESSAGE_SIZE) -> None:
        _check_max_size(max_size)
        self._max_size = max_size
        self._header = bytearray()
        self._body = bytearray()
        self._length: int | None = None  # body length once the header is complete
        self._error: FrameTooLargeError | None = None

    @property
    def max_size(self) -> int:
        return self._max_size

    @property
    def pending(self) -> int:
        """Bytes of the current incomplete frame received so far (header included)."""
        if self._length is None:
            return len(self._header)
        return HEADER_SIZE + len(self._body)

    @property
    def at_boundary(self) -> bool:
        """True when no partial frame is buffered: EOF here is a clean end of stream."""
        return self._error is None and self.pending == 0

    def feed(self, data: BytesLike) -> list[bytes]:
        if self._error is not None:
            raise self._error
        view = memoryview(data).cast("B")
        frames: list[bytes] = []
        offset, end = 0, len(view)
        while True:
            if self._length is None:
                take = min(HEADER_SIZE - len(self._header), end - offset)
                self._header += view[offset : offset + take]
                offset += take
                if len(self._header) < HEADER_SIZE:
                    break
                try:
                    self._length = parse_header(self._header, max_size=self._max_size)
                except FrameTooLargeError as exc:
                    self._error = exc
                    raise
                self._header.clear()
            need = self._length - len(self._body)
            if need > end - offset:
                self._body += view[offset:end]
                break
            if self._body:
                self._body += view[offset : offset + need]
                frames.append(bytes(self._body))
                self._body.clear()
            else:  # the whole body is in this chunk: copy it once
                frames.append(bytes(view[offset : offset + need]))
            offset += need
            self._length = None
            if offset == end:
                break
        return frames
