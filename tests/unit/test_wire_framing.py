"""Unit tests for fabstir_sidecar.wire.framing (pure: no I/O)."""

from __future__ import annotations

import itertools
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
    FrameDecoder,
    encode_frame,
    encode_json_frame,
    parse_header,
)
from fabstir_sidecar.wire.json_codec import MAX_MESSAGE_SIZE, decode_json_object

TWO_MIB = 2 * 1024 * 1024


def header(n: int) -> bytes:
    return struct.pack(">I", n)


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    """``data`` cut at the given offsets (any order, duplicates allowed)."""
    points = sorted({0, len(data), *(c % (len(data) + 1) for c in cuts)})
    return [data[a:b] for a, b in itertools.pairwise(points)]


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
    with pytest.raises(ValueError, match="max_size"):
        FrameDecoder(max_size=max_size)


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


# ------------------------------------------------------------------ FrameDecoder


def test_decoder_one_chunk_many_frames() -> None:
    decoder = FrameDecoder()
    data = encode_frame(b"a") + encode_frame(b"") + encode_frame(b"bcd")
    assert decoder.feed(data) == [b"a", b"", b"bcd"]
    assert decoder.at_boundary
    assert decoder.pending == 0
    assert decoder.max_size == MAX_MESSAGE_SIZE


def test_decoder_byte_by_byte_tracks_pending() -> None:
    decoder = FrameDecoder()
    data = encode_frame(b"xyz")
    for i, byte in enumerate(data[:-1], start=1):
        assert decoder.feed(bytes([byte])) == []
        assert decoder.pending == i
        assert not decoder.at_boundary
    assert decoder.feed(data[-1:]) == [b"xyz"]
    assert decoder.at_boundary


def test_decoder_empty_feeds_change_nothing() -> None:
    decoder = FrameDecoder()
    assert decoder.feed(b"") == []
    assert decoder.at_boundary
    decoder.feed(header(2) + b"a")
    assert decoder.feed(b"") == []
    assert decoder.pending == HEADER_SIZE + 1


def test_decoder_zero_length_frame_completes_with_its_header() -> None:
    decoder = FrameDecoder()
    assert decoder.feed(b"\x00\x00") == []
    assert decoder.feed(b"\x00\x00") == [b""]
    assert decoder.at_boundary


def test_zero_length_frame_is_malformed_json() -> None:
    (payload,) = FrameDecoder().feed(header(0))
    with pytest.raises(MalformedMessageError):
        decode_json_object(payload)


def test_decoder_keeps_only_the_partial_frame() -> None:
    decoder = FrameDecoder()
    assert decoder.feed(encode_frame(b"abc") + b"\x00\x00") == [b"abc"]
    assert decoder.pending == 2
    decoder.feed(b"\x00\x05ab")
    assert decoder.pending == HEADER_SIZE + 2
    assert decoder.feed(b"cde" + encode_frame(b"f")) == [b"abcde", b"f"]
    assert decoder.at_boundary


def test_decoder_accepts_memoryview_and_bytearray() -> None:
    decoder = FrameDecoder()
    data = encode_frame(b"hello")
    assert decoder.feed(memoryview(data)[:3]) == []
    assert decoder.feed(bytearray(data[3:])) == [b"hello"]


def test_decoder_frame_of_exactly_the_cap() -> None:
    decoder = FrameDecoder(max_size=8)
    assert decoder.feed(encode_frame(b"12345678", max_size=8)) == [b"12345678"]


def test_decoder_refuses_a_two_mib_header_before_any_body() -> None:
    decoder = FrameDecoder()
    with pytest.raises(FrameTooLargeError) as info:
        decoder.feed(header(TWO_MIB))  # no body byte has been sent at all
    assert (info.value.size, info.value.limit) == (TWO_MIB, MAX_MESSAGE_SIZE)
    assert not decoder.at_boundary


def test_decoder_refuses_as_soon_as_a_split_header_completes() -> None:
    decoder = FrameDecoder()
    raw = header(MAX_MESSAGE_SIZE + 1)
    assert decoder.feed(raw[:3]) == []
    with pytest.raises(FrameTooLargeError):
        decoder.feed(raw[3:])


def test_decoder_error_is_sticky() -> None:
    decoder = FrameDecoder(max_size=4)
    with pytest.raises(FrameTooLargeError) as first:
        decoder.feed(header(5) + b"12345")
    with pytest.raises(FrameTooLargeError) as again:
        decoder.feed(encode_frame(b"ok"))
    assert again.value is first.value
    assert not decoder.at_boundary


def test_truncated_frame_is_not_at_boundary() -> None:
    decoder = FrameDecoder()
    assert decoder.feed(encode_frame(b"complete") + encode_frame(b"truncated")[:-1]) == [
        b"complete"
    ]
    assert not decoder.at_boundary
    assert decoder.pending == HEADER_SIZE + len(b"truncated") - 1


# ------------------------------------------------------------------ properties

payload_lists = st.lists(st.binary(max_size=300), max_size=12)
cut_lists = st.lists(st.integers(min_value=0, max_value=10_000), max_size=20)


@given(payload_lists, cut_lists)
def test_any_chunking_yields_exactly_the_payloads(payloads: list[bytes], cuts: list[int]) -> None:
    stream = b"".join(encode_frame(p) for p in payloads)
    decoder = FrameDecoder()
    out: list[bytes] = []
    for chunk in split(stream, cuts):
        out.extend(decoder.feed(chunk))
        # Buffered memory never exceeds one partial frame.
        assert decoder.pending < HEADER_SIZE + max(map(len, payloads), default=0)
    assert out == payloads
    assert decoder.at_boundary


@given(payload_lists, st.binary(min_size=1, max_size=300), cut_lists, st.data())
def test_a_truncated_stream_ends_off_boundary(
    payloads: list[bytes], last: bytes, cuts: list[int], data: st.DataObject
) -> None:
    frame = encode_frame(last)
    keep = data.draw(st.integers(min_value=1, max_value=len(frame) - 1))
    stream = b"".join(encode_frame(p) for p in payloads) + frame[:keep]
    decoder = FrameDecoder()
    out = [p for chunk in split(stream, cuts) for p in decoder.feed(chunk)]
    assert out == payloads
    assert not decoder.at_boundary
    assert decoder.pending == keep


@given(
    st.lists(st.binary(max_size=16), max_size=5),
    st.integers(min_value=17, max_value=MAX_FRAME_LENGTH),
    cut_lists,
)
def test_an_oversized_header_raises_in_the_chunk_that_completes_it(
    good: list[bytes], bad_length: int, cuts: list[int]
) -> None:
    prefix = b"".join(encode_frame(p, max_size=16) for p in good)
    stream = prefix + header(bad_length) + b"body" * 8
    header_end = len(prefix) + HEADER_SIZE
    decoder = FrameDecoder(max_size=16)
    out: list[bytes] = []
    fed = 0
    for chunk in split(stream, cuts):
        fed += len(chunk)
        if fed >= header_end:
            with pytest.raises(FrameTooLargeError) as info:
                decoder.feed(chunk)
            assert info.value.size == bad_length
            break
        out.extend(decoder.feed(chunk))
    assert out == good[: len(out)]  # what came out before the error was the good frames
