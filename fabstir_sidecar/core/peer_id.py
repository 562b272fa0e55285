"""Peer ids: the one type for "a libp2p peer", validated once where text enters.

A peer id is a base58btc multihash: the sha2-256 of the public key (``Qm...``, RSA) or the
key itself inlined with the identity hash (``12D3KooW...`` for Ed25519). :class:`PeerId`
is a ``str`` (so it prints, compares and serialises as the text everyone uses) that is only
made by :meth:`PeerId.parse` or :meth:`PeerId.from_bytes`, both of which check it.
"""

from __future__ import annotations

from typing import Final

import base58

from fabstir_sidecar.core.errors import InvalidPeerIdError

__all__ = ["PeerId", "b58encode"]

_MH_IDENTITY: Final = 0x00
_MH_SHA2_256: Final = 0x12
_MAX_INLINE_KEY: Final = 42  # peer-id spec: keys <= 42 bytes use the identity multihash


def b58encode(data: bytes) -> str:
    """base58btc text of ``data`` (the Bitcoin alphabet, as libp2p uses it)."""
    return str(base58.b58encode(data).decode("ascii"))


def _is_peer_multihash(raw: bytes) -> bool:
    if len(raw) < 2 or len(raw) != raw[1] + 2:
        return False
    if raw[0] == _MH_SHA2_256:
        return raw[1] == 32
    return raw[0] == _MH_IDENTITY and 1 <= raw[1] <= _MAX_INLINE_KEY


class PeerId(str):
    """A validated base58 libp2p peer id (a ``str``)."""

    __slots__ = ()

    @classmethod
    def parse(cls, value: object, *, name: str = "peer_id") -> PeerId:
        """``value`` as a PeerId; :class:`InvalidPeerIdError` naming ``name`` otherwise."""
        if isinstance(value, PeerId):
            return value
        if not isinstance(value, str) or not value:
            raise InvalidPeerIdError(name, value, "expected a base58 peer id such as 12D3KooW...")
        try:
            raw = base58.b58decode(value.encode("ascii"))
        except (ValueError, UnicodeEncodeError):
            raise InvalidPeerIdError(name, value, "peer id is not base58btc") from None
        if not _is_peer_multihash(raw):
            raise InvalidPeerIdError(
                name, value, "not a libp2p peer id (base58 sha2-256/identity multihash)"
            )
        return cls(value)

    @classmethod
    def from_bytes(cls, raw: bytes) -> PeerId:
        """The peer id of a binary multihash (as p2pd sends them)."""
        if not _is_peer_multihash(raw):
            raise InvalidPeerIdError("peer_id", raw.hex(), "not a libp2p peer id multihash")
        return cls(b58encode(raw))

    def to_bytes(self) -> bytes:
        """The binary multihash (as p2pd expects it)."""
        return bytes(base58.b58decode(self.encode("ascii")))
