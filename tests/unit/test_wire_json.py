"""Unit tests for fabstir_sidecar.wire.json_codec (pure: no I/O)."""

from __future__ import annotations

import contextlib
import json
import math
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fabstir_sidecar.core.errors import (
    FrameTooLargeError,
    InvalidInputError,
    MalformedMessageError,
    MessageTooLargeError,
    ProtocolError,
)
from fabstir_sidecar.wire.json_codec import (
    MAX_MESSAGE_SIZE,
    decode_json_object,
    decode_json_value,
    encode_json,
    json_type_name,
)

# Text that has a UTF-8 form (no lone surrogates), and finite floats: what JSON carries.
utf8_text = st.text(alphabet=st.characters(codec="utf-8"), max_size=20)
json_values: st.SearchStrategy[Any] = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63)
    | st.floats(allow_nan=False, allow_infinity=False)
    | utf8_text,
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(utf8_text, children, max_size=5)
    ),
    max_leaves=25,
)


# ------------------------------------------------------------------ encode


def test_max_message_size_is_one_mib() -> None:
    assert MAX_MESSAGE_SIZE == 1024 * 1024


def test_encode_is_compact_utf8_without_ascii_escapes() -> None:
    data = encode_json({"a": [1, 2.5, None, True], "é": "日本 🚀"})
    assert data == '{"a":[1,2.5,null,true],"é":"日本 🚀"}'.encode()


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf, [1.0, math.nan]])
def test_encode_rejects_non_finite_numbers(value: Any) -> None:
    with pytest.raises(MalformedMessageError, match="cannot be encoded"):
        encode_json(value)


@pytest.mark.parametrize("value", [{1, 2}, object(), b"bytes", {(1, 2): "tuple key"}, "\ud800"])
def test_encode_rejects_values_without_json_form(value: Any) -> None:
    with pytest.raises(MalformedMessageError):
        encode_json(value)


def test_encode_rejects_circular_references() -> None:
    loop: list[Any] = []
    loop.append(loop)
    with pytest.raises(MalformedMessageError):
        encode_json(loop)


def test_encode_enforces_the_cap() -> None:
    encode_json("x" * (MAX_MESSAGE_SIZE - 2))  # two quotes: exactly the cap
    with pytest.raises(MessageTooLargeError) as info:
        encode_json("x" * (MAX_MESSAGE_SIZE - 1))
    assert (info.value.size, info.value.limit) == (MAX_MESSAGE_SIZE + 1, MAX_MESSAGE_SIZE)
    assert len(encode_json("x" * MAX_MESSAGE_SIZE, max_size=None)) == MAX_MESSAGE_SIZE + 2
    with pytest.raises(MessageTooLargeError):
        encode_json([1, 2], max_size=4)


# ------------------------------------------------------------------ decode


def test_decode_object() -> None:
    assert decode_json_object(b' {"a": [1, 2.5], "b": {"c": null}}\n') == {
        "a": [1, 2.5],
        "b": {"c": None},
    }


def test_decode_accepts_bytearray_and_memoryview() -> None:
    assert decode_json_object(bytearray(b'{"a":1}')) == {"a": 1}
    assert decode_json_object(memoryview(b'xx{"a":1}')[2:]) == {"a": 1}


@pytest.mark.parametrize(
    ("data", "offset"),
    [
        (b'{"a":"\xff"}', 6),
        (b"\x80", 0),
        (b'{"a":"\xc0\xaf"}', 6),  # overlong encoding of "/"
        (b'{"a":"\xed\xa0\x80"}', 6),  # UTF-8-encoded surrogate
        (b'{"a":"\xe6\x97', 6),  # truncated multi-byte sequence
        (b'{"\xc3\xa9":"\xf8"}', 7),
    ],
)
def test_decode_rejects_invalid_utf8_with_its_byte_offset(data: bytes, offset: int) -> None:
    with pytest.raises(MalformedMessageError, match=f"^invalid UTF-8 at byte {offset}$"):
        decode_json_value(data)


def test_json_error_reports_a_byte_offset_not_a_character_offset() -> None:
    # "é" is 1 character but 2 bytes: the error sits at character 5, byte 6.
    with pytest.raises(MalformedMessageError, match=r"^invalid JSON at byte 6: "):
        decode_json_object('{"é":}'.encode())


@pytest.mark.parametrize(
    "text",
    [
        "",
        "   ",
        "{",
        '{"a":1',
        '{"a":1}x',
        "{}{}",
        "{'a':1}",
        '{"a":01}',
        '{"a":"\x01"}',  # raw control character inside a string
        "\ufeff{}",  # byte order mark
        "[1,]",
        '{"a":1,}',
        "nul",
    ],
)
def test_decode_rejects_malformed_json(text: str) -> None:
    with pytest.raises(MalformedMessageError, match=r"^invalid JSON"):
        decode_json_value(text.encode())


@pytest.mark.parametrize(
    "text", ["NaN", "Infinity", "-Infinity", '{"t":NaN}', "[1e400]", '{"t":-1e999}']
)
def test_decode_rejects_non_finite_numbers(text: str) -> None:
    with pytest.raises(MalformedMessageError):
        decode_json_value(text.encode())


def test_decode_rejects_absurd_nesting_and_huge_integers_cleanly() -> None:
    with pytest.raises(MalformedMessageError, match="nested too deeply"):
        decode_json_value(b"[" * 100_000)
    with pytest.raises(MalformedMessageError):
        decode_json_value(b"1" * 10_000)


def test_decode_rejects_unpaired_surrogate_escapes() -> None:
    for text in (r'{"a":"\ud800"}', r'{"\uDFFF":1}', r'[["x\udc00y"]]'):
        with pytest.raises(MalformedMessageError, match="surrogate"):
            decode_json_value(text.encode())


def test_decode_accepts_paired_surrogate_escapes_and_lookalikes() -> None:
    assert decode_json_value(rb'"\ud83d\ude80"') == "🚀"
    assert decode_json_value(rb'"\\ud800"') == "\\ud800"  # an escaped backslash, not an escape


def test_duplicate_keys_keep_the_last_value() -> None:
    assert decode_json_object(b'{"a":1,"a":2}') == {"a": 2}


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        ("[]", "array"),
        ('"s"', "string"),
        ("1", "integer"),
        ("1.5", "number"),
        ("null", "null"),
        ("true", "boolean"),
        ("false", "boolean"),
    ],
)
def test_decode_object_rejects_other_top_level_values(text: str, kind: str) -> None:
    with pytest.raises(MalformedMessageError, match=f"^expected a JSON object, got {kind}$"):
        decode_json_object(text.encode())
    assert decode_json_value(text.encode()) == json.loads(text)


def test_decode_enforces_the_cap_before_parsing() -> None:
    data = b'"' + b"x" * (MAX_MESSAGE_SIZE - 2) + b'"'
    assert len(decode_json_value(data)) == MAX_MESSAGE_SIZE - 2
    with pytest.raises(FrameTooLargeError):
        decode_json_value(data + b" ")
    with pytest.raises(FrameTooLargeError):
        decode_json_object(b"{}", max_size=1)


def test_errors_are_protocol_errors() -> None:
    assert issubclass(MalformedMessageError, ProtocolError)
    assert issubclass(FrameTooLargeError, ProtocolError)
    assert issubclass(MessageTooLargeError, InvalidInputError)


@pytest.mark.parametrize(
    ("value", "name"),
    [
        (None, "null"),
        (True, "boolean"),
        (0, "integer"),
        (0.5, "number"),
        ("", "string"),
        ([], "array"),
        ((), "array"),
        ({}, "object"),
        (b"", "bytes"),
    ],
)
def test_json_type_name(value: object, name: str) -> None:
    assert json_type_name(value) == name


# ------------------------------------------------------------------ properties


@given(json_values)
def test_round_trip_of_any_json_value(value: Any) -> None:
    assert decode_json_value(encode_json(value)) == value


@given(st.dictionaries(utf8_text, json_values, max_size=5))
def test_round_trip_of_any_json_object(value: dict[str, Any]) -> None:
    assert decode_json_object(encode_json(value)) == value


@given(st.binary(max_size=64))
def test_arbitrary_bytes_decode_or_raise_malformed(data: bytes) -> None:
    with contextlib.suppress(MalformedMessageError):
        decode_json_value(data)


@given(st.binary(min_size=1, max_size=64))
def test_invalid_utf8_offset_matches_the_first_bad_byte(data: bytes) -> None:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as exc:
        with pytest.raises(MalformedMessageError, match=f"^invalid UTF-8 at byte {exc.start}$"):
            decode_json_value(data)
