"""Requester-side pacing: how many requests a client keeps in flight to one host.

A service that ``gather``s 1,000 jobs should not open 1,000 streams at a host that runs 8 at
a time: each :class:`Pacer` is a window of requests in flight to one peer (excess callers
wait locally, first come first served), sized like a TCP congestion window:

* it starts at ``initial`` and grows by one per success until the first ``busy`` answer
  (slow start), then by ``1/window`` per success;
* a ``busy`` answer shrinks it by ``DECREASE`` (never below 1);
* it never exceeds the host's advertised ``max_jobs`` (:meth:`Pacer.advertise`, from the
  host's status record), nor ``ceiling``.
"""

from __future__ import annotations

import collections
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Literal

import anyio

from fabstir_sidecar.core.errors import HostBusyError

__all__ = ["Outcome", "Pacer", "Pacers"]

Outcome = Literal["ok", "busy", "failed"]
DECREASE = 0.7
INITIAL_WINDOW = 32
MAX_WINDOW = 4096


class Pacer:
    """The in-flight window for one host (see the module doc)."""

    def __init__(self, *, initial: int = INITIAL_WINDOW, ceiling: int = MAX_WINDOW) -> None:
        self.ceiling = ceiling
        self.window = float(min(initial, ceiling))
        self.inflight = 0
        self.advertised: int | None = None  # the host's max_jobs, once known
        self.busy_answers = 0
        self._slow_start = True
        self._waiters: collections.deque[anyio.Event] = collections.deque()

    @property
    def limit(self) -> int:
        cap = self.ceiling if self.advertised is None else min(self.ceiling, self.advertised)
        return max(1, min(int(self.window), cap))

    @property
    def queued(self) -> int:
        return len(self._waiters)

    async def acquire(self) -> None:
        if self.inflight < self.limit and not self._waiters:
            self.inflight += 1
            return
        event = anyio.Event()
        self._waiters.append(event)
        try:
            await event.wait()
        except BaseException:
            if event.is_set():  # woken and cancelled at once: pass the turn on
                self.inflight -= 1
                self._wake()
            else:
                self._waiters.remove(event)
            raise

    def release(self, outcome: Outcome) -> None:
        self.inflight -= 1
        if outcome == "ok":
            self.window += 1.0 if self._slow_start else 1.0 / self.window
            self.window = min(self.window, float(self.ceiling))
        elif outcome == "busy":
            self.busy_answers += 1
            self._slow_start = False
            self.window = max(1.0, self.window * DECREASE)
        self._wake()

    def advertise(self, max_jobs: int, active_jobs: int) -> None:
        """The host's own record: at most ``max_jobs``; start near its free slots."""
        if self.advertised is None and active_jobs:
            self.window = float(max(1, min(self.window, max_jobs - active_jobs + self.inflight)))
        self.advertised = max(1, max_jobs)
        self._wake()

    def _wake(self) -> None:
        while self._waiters and self.inflight < self.limit:
            self.inflight += 1
            self._waiters.popleft().set()

    @contextlib.asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """Hold a window slot around one request; a ``busy`` answer (HostBusyError from
        ``fabstir_sidecar.core.errors``) shrinks the window, a success grows it."""
        await self.acquire()
        outcome: Outcome = "failed"
        try:
            yield
            outcome = "ok"
        except HostBusyError:
            outcome = "busy"
            raise
        finally:
            self.release(outcome)


class Pacers:
    """One :class:`Pacer` per peer id, made on first use (then ``on_first_use(peer_id)``
    runs: the client asks the host's capacity). Disabled: no window at all."""

    def __init__(
        self,
        *,
        enabled: bool = True,
        on_first_use: Callable[[str], None] | None = None,
        initial: int = INITIAL_WINDOW,
        ceiling: int = MAX_WINDOW,
    ) -> None:
        self.enabled = enabled
        self._on_first_use = on_first_use
        self._initial = initial
        self._ceiling = ceiling
        self._by_peer: dict[str, Pacer] = {}

    def __contains__(self, peer_id: object) -> bool:
        return peer_id in self._by_peer

    def __getitem__(self, peer_id: str) -> Pacer:
        pacer = self._by_peer.get(peer_id)
        if pacer is None:
            pacer = self._by_peer[peer_id] = Pacer(initial=self._initial, ceiling=self._ceiling)
            if self._on_first_use is not None:
                self._on_first_use(peer_id)
        return pacer

    def get(self, peer_id: str) -> Pacer | None:
        """The window for ``peer_id``, or None when pacing is disabled."""
        return self[peer_id] if self.enabled else None

    def slot(self, peer_id: str) -> contextlib.AbstractAsyncContextManager[None]:
        """``Pacer.slot`` of ``peer_id``'s window (nothing when disabled)."""
        return self[peer_id].slot() if self.enabled else contextlib.nullcontext()
