"""Unit tests for fabstir_sidecar.wire.framing (pure: no I/O)."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fabstir_sidecar.core.errors import (
    FrameTooLargeError,
    MalformedMessageError,
    MessageTooLargeError,
)
from fabstir_sidecar.wire.framing import (
    HEADER_SIZE,
    MAX_FRAME_LENGTH,
    encode_frame,
    encode_json_frame,
    parse_header,
)
from fabstir_sidecar.wire.json_codec import MAX_MESSAGE_SIZE, decode_json_object

TWO_MIB = 2 * 1024 * 1024


def header(n: int) -> bytes:
    return struct.pack(">I", n)


# ------------------------------------------------------------------ encode


def test_encode_frame_is_big_endian_length_then_payload() -> None:
    assert HEADER_SIZE == 4
    assert encode_frame(b"abc") == b"\x00\x00\x00\x03abc"
    assert encode_frame(b"") == b"\x00\x00\x00\x00"
    assert encode_frame(b"x" * 0x0102_03) == b"\x00\x01\x02\x03" + b"x" * 0x0102_03
    assert encode_frame(bytearray(b"ab")) == b"\x00\x00\x00\x02ab"
    assert encode_frame(memoryview(b"ab")) == b"\x00\x00\x00\x02ab"


def test_encode_frame_enforces_the_cap() -> None:
    assert len(encode_frame(b"x" * MAX_MESSAGE_SIZE)) == HEADER_SIZE + MAX_MESSAGE_SIZE
    with pytest.raises(MessageTooLargeError) as info:
        encode_frame(b"x" * (MAX_MESSAGE_SIZE + 1))
    assert (info.value.size, info.value.limit) == (MAX_MESSAGE_SIZE + 1, MAX_MESSAGE_SIZE)
    assert "message too large" in str(info.value)
    with pytest.raises(MessageTooLargeError):
        encode_frame(b"abc", max_size=2)


@pytest.mark.parametrize("max_size", [-1, MAX_FRAME_LENGTH + 1])
def test_max_size_must_fit_a_header(max_size: int) -> None:
    with pytest.raises(ValueError, match="max_size"):
        encode_frame(b"", max_size=max_size)
    with pytest.raises(ValueError, match="max_size"):
        parse_header(header(0), max_size=max_size)


def test_encode_json_frame() -> None:
    assert encode_json_frame({"type": "status_request"}) == (
        b'\x00\x00\x00\x19{"type":"status_request"}'
    )
    with pytest.raises(MessageTooLargeError):
        encode_json_frame({"a": "x" * MAX_MESSAGE_SIZE})
    with pytest.raises(MessageTooLargeError):
        encode_json_frame({"a": 1}, max_size=6)
    assert encode_json_frame({"a": 1}, max_size=7) == b'\x00\x00\x00\x07{"a":1}'


# ------------------------------------------------------------------ parse_header


@pytest.mark.parametrize("n", [0, 1, 255, 256, 65_536, MAX_MESSAGE_SIZE])
def test_parse_header(n: int) -> None:
    assert parse_header(header(n)) == n
    assert parse_header(bytearray(header(n))) == n
    assert parse_header(memoryview(header(n))) == n


@pytest.mark.parametrize("n", [MAX_MESSAGE_SIZE + 1, TWO_MIB, MAX_FRAME_LENGTH])
def test_parse_header_refuses_oversized_lengths(n: int) -> None:
    with pytest.raises(FrameTooLargeError) as info:
        parse_header(header(n))
    assert (info.value.size, info.value.limit) == (n, MAX_MESSAGE_SIZE)


def test_parse_header_honours_a_custom_cap() -> None:
    assert parse_header(header(10), max_size=10) == 10
    with pytest.raises(FrameTooLargeError):
        parse_header(header(11), max_size=10)


@pytest.mark.parametrize("raw", [b"", b"\x00", b"\x00\x00\x00", b"\x00\x00\x00\x00\x00"])
def test_parse_header_needs_exactly_four_bytes(raw: bytes) -> None:
    with pytest.raises(ValueError, match="4 bytes"):
        parse_header(raw)


def test_zero_length_frame_is_malformed_json() -> None:
    frame = encode_frame(b"")
    assert parse_header(frame[:HEADER_SIZE]) == 0
    with pytest.raises(MalformedMessageError):
        decode_json_object(frame[HEADER_SIZE:])


# ------------------------------------------------------------------ properties


@given(st.binary(max_size=300), st.integers(min_value=300, max_value=MAX_FRAME_LENGTH))
def test_header_announces_the_payload_length(payload: bytes, max_size: int) -> None:
    frame = encode_frame(payload, max_size=max_size)
    assert parse_header(frame[:HEADER_SIZE], max_size=max_size) == len(payload)
    assert frame[HEADER_SIZE:] == payload
