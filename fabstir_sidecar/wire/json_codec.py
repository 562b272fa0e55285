"""Strict UTF-8 JSON for the wire (docs/protocol.md §2-4).

Decoding is stricter than :func:`json.loads` in the ways that matter to a peer:
invalid UTF-8, a byte order mark, ``NaN``/``Infinity`` and numbers that overflow
to infinity, unpaired UTF-16 surrogate escapes and absurd nesting are all reported
as :class:`MalformedMessageError` (with a byte offset where one exists) instead of
being accepted or escaping as an unrelated exception.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

from fabstir_sidecar.core.defaults import MAX_MESSAGE_SIZE
from fabstir_sidecar.core.errors import (
    FrameTooLargeError,
    MalformedMessageError,
    MessageTooLargeError,
)

__all__ = [
    "MAX_MESSAGE_SIZE",
    "BytesLike",
    "decode_json_object",
    "decode_json_value",
    "encode_json",
    "json_type_name",
]

"""1 MiB: the cap of a frame and of a one-way message stream."""

BytesLike = bytes | bytearray | memoryview

# Only a ``\uD800``-``\uDFFF`` escape can smuggle a lone surrogate into a decoded str,
# so the (linear) surrogate walk runs only when the text contains one.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


def json_type_name(value: object) -> str:
    """The JSON name of a decoded value's type, for error messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):  # before int: bool is an int subclass
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list | tuple):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


def encode_json(value: Any, *, max_size: int | None = MAX_MESSAGE_SIZE) -> bytes:
    """Compact UTF-8 JSON of ``value``.

    Raises :class:`MalformedMessageError` for what has no JSON form (NaN, infinities,
    non-string keys, unknown types, unpaired surrogates, circular references) and
    :class:`MessageTooLargeError` if the result exceeds ``max_size`` (None: no cap).
    """
    try:
        text = json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
        data = text.encode("utf-8")
    except (TypeError, ValueError, RecursionError) as exc:
        # UnicodeEncodeError (lone surrogate) is a ValueError; so is a circular reference.
        raise MalformedMessageError(f"value cannot be encoded as JSON: {exc}") from exc
    if max_size is not None and len(data) > max_size:
        raise MessageTooLargeError(len(data), max_size)
    return data


def decode_json_value(data: BytesLike, *, max_size: int = MAX_MESSAGE_SIZE) -> Any:
    """Decode one JSON value (any type) from strict UTF-8 ``data``."""
    if len(data) > max_size:
        raise FrameTooLargeError(len(data), max_size)
    raw = bytes(data)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise MalformedMessageError(f"invalid UTF-8 at byte {exc.start}") from exc
    try:
        value = _DECODER.decode(text)
    except json.JSONDecodeError as exc:
        offset = len(text[: exc.pos].encode("utf-8"))
        raise MalformedMessageError(f"invalid JSON at byte {offset}: {exc.msg}") from exc
    except RecursionError as exc:
        raise MalformedMessageError("invalid JSON: nested too deeply") from exc
    except ValueError as exc:  # _reject_constant, _parse_finite, int digit limit
        raise MalformedMessageError(f"invalid JSON: {exc}") from exc
    if _SURROGATE_ESCAPE.search(text) is not None:
        _reject_lone_surrogates(value)
    return value


def decode_json_object(data: BytesLike, *, max_size: int = MAX_MESSAGE_SIZE) -> dict[str, Any]:
    """Decode strict UTF-8 ``data`` that must hold exactly one JSON object."""
    value = decode_json_value(data, max_size=max_size)
    if not isinstance(value, dict):
        raise MalformedMessageError(f"expected a JSON object, got {json_type_name(value)}")
    return value


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _parse_finite(literal: str) -> float:
    number = float(literal)
    if not math.isfinite(number):
        raise ValueError(f"number {literal[:32]} is out of range")
    return number


# One decoder for every message: json.loads with options builds a new one per call.
# A BOM is still refused: the decoder reports it as "Expecting value" at byte 0.
_DECODER = json.JSONDecoder(parse_constant=_reject_constant, parse_float=_parse_finite)


def _reject_lone_surrogates(value: Any) -> None:
    """Reject strings holding unpaired surrogates: they have no UTF-8 form to echo back."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            strings: list[str] = [item]
        elif isinstance(item, dict):
            strings = list(item)
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
            continue
        else:
            continue
        for s in strings:
            try:
                s.encode("utf-8")
            except UnicodeEncodeError as exc:
                raise MalformedMessageError(
                    "invalid JSON: string contains an unpaired UTF-16 surrogate escape"
                ) from exc
