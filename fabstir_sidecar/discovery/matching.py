"""Host matching (docs/discovery.md): pure filtering, ranking and "why nothing matched".

No I/O: the finder collects ``Candidate`` answers (a host's own status record plus the
latency we measured) and hands them here.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from fabstir_sidecar.core.errors import ConfigError
from fabstir_sidecar.protocols.status import HostStatus
from fabstir_sidecar.wire.messages import Host

CRITERIA = ("required_models", "min_reputation", "max_latency", "min_uptime", "location")


@dataclass(frozen=True, slots=True)
class HostCriteria:
    """All optional. ``max_latency`` is ms of measured status round trip; uptime in seconds."""

    min_reputation: int | None = None
    max_latency: float | None = None
    required_models: tuple[str, ...] = ()
    min_uptime: int | None = None
    location: str | None = None

    def __post_init__(self) -> None:
        for name in ("min_reputation", "max_latency", "min_uptime"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or value < 0):
                raise ConfigError(name, value, "must be a number >= 0")
        if isinstance(self.required_models, str):
            raise ConfigError("required_models", self.required_models, "expected a list")
        object.__setattr__(self, "required_models", tuple(self.required_models))

    def failed(self, candidate: HostStatus) -> str | None:
        """The first criterion the candidate fails (in ``CRITERIA`` order), or None."""
        host = candidate.host
        if self.required_models and not set(self.required_models).issubset(host.models):
            return "required_models"
        if self.min_reputation is not None and host.reputation < self.min_reputation:
            return "min_reputation"
        if self.max_latency is not None and candidate.latency_ms > self.max_latency:
            return "max_latency"
        if self.min_uptime is not None and host.uptime_s < self.min_uptime:
            return "min_uptime"
        if self.location is not None and (host.location or "").upper() != self.location.upper():
            return "location"
        return None


def free_capacity(host: Host) -> int:
    return max(host.max_jobs - host.active_jobs, 0)


def rank_key(candidate: HostStatus) -> tuple[float, int, int, str]:
    """Latency ascending, then reputation and free capacity descending; peer id breaks ties."""
    host = candidate.host
    return (candidate.latency_ms, -host.reputation, -free_capacity(host), host.peer_id)


@dataclass(slots=True)
class MatchReport:
    ranked: list[HostStatus] = field(default_factory=list)
    excluded: dict[str, int] = field(default_factory=lambda: dict.fromkeys(CRITERIA, 0))
    answered: int = 0
    answers: list[HostStatus] = field(default_factory=list)  # every host that answered, once


def match_hosts(criteria: HostCriteria, candidates: Iterable[HostStatus]) -> MatchReport:
    """Filter and rank; each excluded host is counted under the first criterion it fails."""
    report = MatchReport()
    best: dict[str, HostStatus] = {}
    for candidate in candidates:
        peer = candidate.host.peer_id
        if peer in best and best[peer].latency_ms <= candidate.latency_ms:
            continue
        best[peer] = candidate
    report.answered = len(best)
    report.answers = list(best.values())
    for candidate in best.values():
        reason = criteria.failed(candidate)
        if reason is None:
            report.ranked.append(candidate)
        else:
            report.excluded[reason] += 1
    report.ranked.sort(key=rank_key)
    return report


def summarize(ranked: Sequence[HostStatus]) -> list[dict[str, object]]:
    """The CLI's JSON shape of ranked hosts."""
    return [
        {
            "peer_id": c.host.peer_id,
            "addrs": list(c.host.addrs),
            "models": list(c.host.models),
            "reputation": c.host.reputation,
            "uptime_s": c.host.uptime_s,
            "location": c.host.location,
            "latency_ms": round(c.latency_ms, 3),
            "active_jobs": c.host.active_jobs,
            "max_jobs": c.host.max_jobs,
            "api_url": c.host.api_url,
        }
        for c in ranked
    ]
