"""Per-protocol limits of the request/response layer (sizes, deadlines, caps)."""

from __future__ import annotations

from dataclasses import dataclass

from fabstir_sidecar.wire.json_codec import MAX_MESSAGE_SIZE


@dataclass(frozen=True, slots=True)
class RpcLimits:
    """Per-protocol policy (py-libp2p's request_response config object, in spirit)."""

    max_size: int = MAX_MESSAGE_SIZE
    read_timeout: float = 30.0
    total_timeout: float = 30.0
    max_concurrent: int = 256
    max_per_peer: int = 32
    close_linger: float = 0.2
    """After the last frame, wait up to this long for the requester to close first."""
