"""How host lookups behave: fan-out, budgets, deadlines and cache lifetimes (validated)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from fabstir_sidecar.core.validate import check_int, check_seconds

__all__ = ["FinderConfig", "LookupStats"]


@dataclass(frozen=True, slots=True)
class FinderConfig:
    """Tuning of ``find_host`` / ``find_hosts`` (docs/discovery.md)."""

    fanout: int = 16  # Concurrent status queries.
    max_queries: int = 32  # Status queries per lookup.
    status_timeout: float = 3.0  # Per host: dial + status round trip, one deadline.
    status_ttl: float = 5.0  # How long a status answer (or failure) is reused (0: never).
    # How long a gathered candidate list (DHT, exchange) is reused (0: never).
    candidates_ttl: float = 5.0
    # Queries per lookup kept for candidates not in the peer cache (at most max_queries).
    fresh_share: int = 8
    # Peers that do not speak status are not asked again for this long.
    not_a_host_ttl: float = 60.0
    dht_timeout: float = 3.0
    dht_count: int = 20
    exchange_peers: int = 3  # Peers asked for discovery hints per lookup.
    exchange_probes: int = 32  # Connected peers a discovery responder asks per round.
    # How long a discovery answer may wait for those answers (0: not at all).
    exchange_wait: float = 0.5

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.type == "int":
                check_int(value, f.name, minimum=0 if f.name in _MAY_BE_ZERO else 1)
            else:
                check_seconds(value, f.name, allow_zero=f.name in _MAY_BE_ZERO)


_MAY_BE_ZERO = frozenset(
    {
        "status_ttl",
        "candidates_ttl",
        "not_a_host_ttl",
        "fresh_share",
        "exchange_wait",
        "exchange_peers",
        "exchange_probes",
    }
)


@dataclass(slots=True)
class LookupStats:
    """What one lookup saw: per-source candidate counts and network queries made."""

    sources: dict[str, int] = field(default_factory=dict)
    candidates: int = 0
    status_queries: int = 0
    failed: int = 0
    skipped: int = 0  # Candidates not asked: remembered as not-a-host (``not_a_host_ttl``).
