"""The multiformats unsigned varint (LEB128): the one implementation of the package."""

from __future__ import annotations

__all__ = ["decode_uvarint", "encode_uvarint"]


def encode_uvarint(value: int) -> bytes:
    """Unsigned LEB128, the multiformats varint: 0x0200 -> ``80 04``."""
    if value < 0:
        raise ValueError(f"a varint is unsigned, got {value}")
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def decode_uvarint(buf: bytes | bytearray, *, max_bytes: int = 9) -> tuple[int, int] | None:
    """``(value, bytes_used)``, or None if ``buf`` holds only the start of a varint.

    Raises ValueError when ``max_bytes`` bytes pass without the varint ending (the cap
    keeps a hostile length prefix from growing without bound).
    """
    value = 0
    for i, byte in enumerate(buf[:max_bytes]):
        value |= (byte & 0x7F) << (7 * i)
        if not byte & 0x80:
            return value, i + 1
    if len(buf) >= max_bytes:
        raise ValueError(f"varint longer than {max_bytes} bytes")
    return None
