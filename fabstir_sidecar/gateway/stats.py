"""Counters of the gateway's own code paths (requests, failovers, dropped SDK messages)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(slots=True)
class GatewayStats:
    requests: dict[tuple[str, str], int] = field(default_factory=dict)  # (route, status)
    failovers: int = 0
    messages_dropped: int = 0  # SSE subscribers too slow: oldest messages discarded

    def count_request(self, route: str, status: int) -> None:
        key = (route, str(status))
        self.requests[key] = self.requests.get(key, 0) + 1
