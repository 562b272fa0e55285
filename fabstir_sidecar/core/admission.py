"""Admission bookkeeping shared by the stream layer, the rpc layer and the host role.

Pure logic, no I/O: :class:`FairShare` counts what each peer holds of a capped resource
(streams, streams still waiting for their request, job slots) and decides whether a peer
may take one more; :class:`AdmissionCounters` counts what happened to requests, by
protocol, for the API and the metrics endpoint; :class:`RetryEstimator` says how long a
``busy`` requester should wait; :class:`LogSummary` turns a burst of
identical events into one log line per interval with their counts.

Fair share: a peer may always take a unit while the resource is lightly used. Under
contention (at least half of ``capacity`` taken), a peer already holding its fair share
(``capacity`` divided by the peers holding some, itself included, never below
``min_share``) is refused, so one greedy peer cannot starve the others and many identities
that each take a little cannot take it all.
"""

from __future__ import annotations

import logging
import math
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

__all__ = ["AdmissionCounters", "FairShare", "LogSummary", "RetryEstimator"]


class FairShare:
    """Units of a capped resource held per peer (see the module doc for the rule)."""

    __slots__ = ("by_peer", "capacity", "min_share", "per_peer", "total")

    def __init__(self, capacity: int, per_peer: int, *, min_share: int = 1) -> None:
        if capacity < 1 or per_peer < 1 or min_share < 1:
            raise ValueError("capacity, per_peer and min_share must be >= 1")
        self.capacity = capacity
        self.per_peer = min(per_peer, capacity)
        self.min_share = min(min_share, self.per_peer)
        self.total = 0
        self.by_peer: dict[str, int] = {}

    def fair_share(self, peer: str) -> int:
        holders = len(self.by_peer) + (0 if peer in self.by_peer else 1)
        return max(self.min_share, self.capacity // holders)

    def refusal(self, peer: str) -> str | None:
        """Why ``peer`` may not take one more unit now (None: it may)."""
        held = self.by_peer.get(peer, 0)
        if self.total >= self.capacity:
            return "full"
        if held >= self.per_peer:
            return "peer cap"
        if self.total * 2 >= self.capacity and held >= self.fair_share(peer):
            return "fair share"
        return None

    def acquire(self, peer: str) -> bool:
        if self.refusal(peer) is not None:
            return False
        self.take(peer)
        return True

    def take(self, peer: str) -> None:
        """Take a unit without checking (the caller decided)."""
        self.total += 1
        self.by_peer[peer] = self.by_peer.get(peer, 0) + 1

    def release(self, peer: str) -> None:
        left = self.by_peer.get(peer, 0) - 1
        if left > 0:
            self.by_peer[peer] = left
        else:
            self.by_peer.pop(peer, None)
        self.total = max(0, self.total - 1)


@dataclass(slots=True)
class AdmissionCounters:
    """What happened to inbound requests, per protocol id (plain dicts, read them freely).

    * ``accepted``: requests read in full and handed to their handler;
    * ``busy``: answered ``busy`` (``job_rejected`` or ``error``) because over capacity;
    * ``shutting_down``: answered ``shutting_down`` (the host is stopping);
    * ``reset``: streams closed without reading them (hard caps: flood defence);
    * ``timeout``: streams cut at a deadline (request not sent in time, reader stalled);
    * ``closed``: streams their requester closed before sending a whole request.
    """

    accepted: Counter[str] = field(default_factory=Counter)
    busy: Counter[str] = field(default_factory=Counter)
    shutting_down: Counter[str] = field(default_factory=Counter)
    reset: Counter[str] = field(default_factory=Counter)
    timeout: Counter[str] = field(default_factory=Counter)
    closed: Counter[str] = field(default_factory=Counter)

    def as_dict(self) -> dict[str, dict[str, int]]:
        return {
            name: dict(getattr(self, name))
            for name in ("accepted", "busy", "shutting_down", "reset", "timeout", "closed")
        }


class LogSummary:
    """One log line per ``interval`` for a repeated event, with counts by key.

    The first event of a quiet period is logged at once; later ones are counted and logged
    together when the next event comes after ``interval`` or on :meth:`flush`.
    """

    def __init__(
        self,
        logger: logging.Logger,
        message: str,
        *,
        interval: float = 10.0,
        level: int = logging.WARNING,
    ) -> None:
        self._log = logger
        self._message = message
        self._interval = interval
        self._level = level
        self._counts: Counter[str] = Counter()
        self._last = -float("inf")

    def count(self, key: str, **fields: object) -> None:
        self._counts[key] += 1
        now = time.monotonic()
        if now - self._last >= self._interval:
            self._emit(now, fields)

    def flush(self) -> None:
        if self._counts:
            self._emit(time.monotonic(), {})

    def _emit(self, now: float, fields: dict[str, object]) -> None:
        counts = dict(self._counts)
        self._counts.clear()
        window = now - self._last
        self._last = now
        extra = {"counts": counts, "total": sum(counts.values()), **fields}
        if window != float("inf"):
            extra["interval_s"] = round(window, 1)
        self._log.log(self._level, self._message, extra=extra)


class RetryEstimator:
    """The ``retry_after`` of busy answers: a controller, not a guess.

    The host cannot know how many requesters wait, but it sees two rates: busy answers and
    finished jobs (both decayed over ``window`` seconds). If it answers ``busy`` more often
    than ``target`` x the jobs it finishes, waiting requesters come back too soon: the wait
    grows (x2 at most per ``step`` s, and only once the busy answers outnumber the slots); if
    less often, it shrinks (x0.5 at most); after a quiet spell it starts again. So retries
    settle near the rate at which slots free up, whatever the number of requesters, and the
    host spends its CPU on jobs rather than on refusals. Never below one job time over the
    slots, nor outside [``floor_s``, ``ceiling_s``].
    """

    def __init__(
        self,
        *,
        window: float = 1.0,
        step: float = 0.25,
        target: float = 0.5,
        floor_s: float = 0.005,
        ceiling_s: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._window = window
        self._step = step
        self._target = target
        self._floor = floor_s
        self._ceiling = ceiling_s
        self._clock = clock
        self.job_s = 0.05  # EWMA of how long a job holds its slot
        self.retry_s = 0.05
        self._busy = 0.0
        self._done = 0.0
        self._at = clock()
        self._adjusted = self._at

    def _decay(self) -> float:
        now = self._clock()
        factor = math.exp(-(now - self._at) / self._window)
        self._busy *= factor
        self._done *= factor
        self._at = now
        return now

    def job_done(self, seconds: float) -> None:
        self._decay()
        self._done += 1.0
        self.job_s += 0.1 * (seconds - self.job_s)

    def busy(self, slots: int) -> float:
        """Count one busy answer; the seconds it should tell the requester to wait."""
        now = self._decay()
        self._busy += 1.0
        low = max(self._floor, self.job_s / slots)
        elapsed = now - self._adjusted
        if elapsed > 4 * self._window:  # quiet for a while: start again from one job time
            self.retry_s = low
            self._adjusted = now
        elif elapsed >= self._step:
            factor = min(2.0, max(0.5, self._busy / max(self._done, 1.0) / self._target))
            if factor > 1.0 and self._busy <= slots:
                factor = 1.0  # a handful of refusals is no stampede
            self.retry_s *= factor
            self._adjusted = now
        self.retry_s = min(self._ceiling, max(low, self.retry_s))
        return self.retry_s
