"""What a client's jobs did, for the gateway's ``/metrics``: outcome counts and durations.

Pure data (``FabstirClient.stats``); kept here so that ``client.py`` stays about its I/O.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field

from fabstir_sidecar.core.errors import FabstirError, JobRejectedError

__all__ = ["JOB_DURATION_BUCKETS", "ClientStats", "job_outcome"]

JOB_DURATION_BUCKETS: tuple[float, ...] = (
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
)  # fmt: skip


@dataclass(slots=True)
class ClientStats:
    """What this client's jobs did (read by the gateway's /metrics): outcome counts
    (``result``, ``rejected``, ``error``, ``cancelled``), tokens streamed, and job durations
    counted per upper bound of ``JOB_DURATION_BUCKETS`` (the last slot: above them all)."""

    jobs: dict[str, int] = field(default_factory=dict)
    tokens_streamed: int = 0
    duration_counts: list[int] = field(
        default_factory=lambda: [0] * (len(JOB_DURATION_BUCKETS) + 1)
    )
    duration_sum: float = 0.0

    def record(self, outcome: str, seconds: float) -> None:
        self.jobs[outcome] = self.jobs.get(outcome, 0) + 1
        self.duration_counts[bisect.bisect_left(JOB_DURATION_BUCKETS, seconds)] += 1
        self.duration_sum += seconds


def job_outcome(exc: BaseException | None) -> str:
    if exc is None:
        return "result"
    if isinstance(exc, JobRejectedError):
        return "rejected"
    if isinstance(exc, FabstirError):
        return "error"
    return "cancelled"
