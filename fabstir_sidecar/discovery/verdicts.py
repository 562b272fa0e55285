"""The not-a-host memory: peers whose status answer said "no host here", each remembered
with the error it gave until a time-to-live passes, bounded in size."""

from __future__ import annotations

import anyio

from fabstir_sidecar.core.errors import FabstirError

__all__ = ["MAX_NOT_A_HOST", "NotAHostMemory"]

MAX_NOT_A_HOST = 4096
"""Peers remembered at most; expired ones are pruned beyond it, then the oldest."""


class NotAHostMemory:
    def __init__(self, ttl: float) -> None:
        self._ttl = ttl
        self._entries: dict[str, tuple[float, FabstirError]] = {}  # peer -> (expiry, why)

    def error_of(self, peer_id: str) -> FabstirError | None:
        """The error ``peer_id`` answered within the TTL (None: not remembered)."""
        entry = self._entries.get(peer_id)
        if entry is None:
            return None
        if entry[0] <= anyio.current_time():
            del self._entries[peer_id]
            return None
        return entry[1]

    def remember(self, peer_id: str, error: FabstirError) -> None:
        now = anyio.current_time()
        self._entries[peer_id] = (now + self._ttl, error)
        if len(self._entries) > MAX_NOT_A_HOST:
            for key in [k for k, (until, _) in self._entries.items() if until <= now]:
                del self._entries[key]
            while len(self._entries) > MAX_NOT_A_HOST:  # all fresh: drop the oldest
                del self._entries[next(iter(self._entries))]

    def forget(self, peer_id: str) -> None:
        """``peer_id`` answered as a host."""
        self._entries.pop(peer_id, None)
