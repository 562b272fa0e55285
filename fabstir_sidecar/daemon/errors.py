"""p2pd's error strings mapped into the exception tree (pure; unit tested).

The daemon answers a failed request with an ``ErrorResponse`` holding go-libp2p's error
text only; which exception the caller gets is decided here, so callers never parse it.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from fabstir_sidecar.core.errors import (
    ControlError,
    FabstirError,
    PeerUnreachableError,
    ProtocolNotSupportedError,
)

__all__ = ["classify_daemon_error"]

_UNREACHABLE = re.compile(
    r"failed to dial|no addresses|dial backoff|connection refused|no route|"
    r"context deadline exceeded|i/o timeout|all dials failed|no good addresses|"
    r"peer id mismatch|failed to negotiate security|cannot connect|"
    r"failed to find any peer in table|routing: not found|dial to self",
    re.IGNORECASE,
)
_UNSUPPORTED = re.compile(r"protocols? not supported|protocol negotiation failed", re.IGNORECASE)


def classify_daemon_error(
    message: str, *, peer_id: str | None = None, protocols: Sequence[str] = ()
) -> FabstirError:
    """The exception for a p2pd ErrorResponse text about ``peer_id`` / ``protocols``."""
    # go-libp2p's dial errors span lines ("all dials failed\n  * [addr] reason"): one line.
    message = "; ".join(part.strip() for part in message.splitlines() if part.strip())
    if _UNSUPPORTED.search(message):
        proto = ", ".join(protocols)
        return ProtocolNotSupportedError(
            f"peer {peer_id} does not support {proto}: {message}",
            peer_id=peer_id,
            protocol=proto,
        )
    if _UNREACHABLE.search(message):
        return PeerUnreachableError(f"cannot reach peer {peer_id}: {message}", peer_id=peer_id)
    return ControlError(f"p2pd refused the request: {message}")
