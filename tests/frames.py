"""Split a captured byte stream into its length-prefixed frames (a test helper)."""

from __future__ import annotations

from fabstir_sidecar.wire.framing import HEADER_SIZE, parse_header
from fabstir_sidecar.wire.json_codec import MAX_MESSAGE_SIZE


def split_frames(data: bytes, *, max_size: int = MAX_MESSAGE_SIZE) -> tuple[list[bytes], int]:
    """The complete frames' payloads in ``data``, and how many bytes of a partial frame follow.

    An oversized header raises :class:`~fabstir_sidecar.core.errors.FrameTooLargeError`.
    """
    payloads: list[bytes] = []
    offset = 0
    while len(data) - offset >= HEADER_SIZE:
        size = parse_header(data[offset : offset + HEADER_SIZE], max_size=max_size)
        end = offset + HEADER_SIZE + size
        if end > len(data):
            break
        payloads.append(data[offset + HEADER_SIZE : end])
        offset = end
    return payloads, len(data) - offset
