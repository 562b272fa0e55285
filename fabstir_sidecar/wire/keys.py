"""DHT provider keys (docs/protocol.md §8).

A host provides, for every model it serves and for :data:`ANY_HOST_KEY`, the CID v1
with multicodec ``json`` (0x0200) whose multihash is sha2-256 of the UTF-8 model
id: the key the TypeScript SDK's ``P2PClient.findProviders`` looks up.
"""

from __future__ import annotations

import hashlib
from typing import Final

from fabstir_sidecar.core.varint import encode_uvarint

__all__ = [
    "ANY_HOST_KEY",
    "CID_VERSION",
    "JSON_MULTICODEC",
    "SHA2_256",
    "model_cid",
]

ANY_HOST_KEY: Final = "llm-inference"
"""The literal every host provides, whatever models it serves ("any host")."""

CID_VERSION: Final = 1
JSON_MULTICODEC: Final = 0x0200
SHA2_256: Final = 0x12
_SHA2_256_LENGTH: Final = 32


def model_cid(model_id: str) -> bytes:
    """Binary CID v1: varint(1), varint(0x0200), then the sha2-256 multihash."""
    if not model_id:
        raise ValueError("a model id must not be empty")
    try:
        digest = hashlib.sha256(model_id.encode("utf-8")).digest()
    except UnicodeEncodeError as exc:
        raise ValueError(f"model id {model_id!r} is not valid Unicode text") from exc
    multihash = encode_uvarint(SHA2_256) + encode_uvarint(_SHA2_256_LENGTH) + digest
    return encode_uvarint(CID_VERSION) + encode_uvarint(JSON_MULTICODEC) + multihash
