"""Coalesce concurrent lookups of the same key and keep answers for a short TTL.

A burst of ``find_host`` calls must not multiply network queries: the first caller for a key
does the work, the others wait for its answer, and for ``ttl`` seconds later callers get the
stored answer (or the stored failure) without asking the network again.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

import anyio

T = TypeVar("T")


@dataclass(slots=True)
class _Entry(Generic[T]):
    done: anyio.Event = field(default_factory=anyio.Event)
    value: T | None = None
    error: BaseException | None = None
    expires: float = 0.0
    cancelled: bool = False


class SingleFlight(Generic[T]):
    def __init__(
        self, ttl: float, *, error_ttl: float | None = None, max_entries: int = 4096
    ) -> None:
        self.ttl = ttl
        self.error_ttl = ttl if error_ttl is None else error_ttl
        self.max_entries = max_entries
        self._entries: dict[Hashable, _Entry[T]] = {}
        self.calls = 0  # how many times the work actually ran (for tests and benchmarks)

    def forget(self, key: Hashable) -> None:
        self._entries.pop(key, None)

    async def get(self, key: Hashable, work: Callable[[], Awaitable[T]]) -> T:
        entry = self._entries.get(key)
        now = anyio.current_time()
        if entry is not None and entry.done.is_set() and entry.expires <= now:
            entry = None
        if entry is None:
            entry = _Entry()
            self._entries[key] = entry
            self._prune(now)
            self.calls += 1
            try:
                entry.value = await work()
                entry.expires = anyio.current_time() + self.ttl
            except Exception as exc:
                entry.error = exc
                entry.expires = anyio.current_time() + self.error_ttl
            except BaseException:
                # Cancelled: let the next caller redo the work.
                self._entries.pop(key, None)
                entry.cancelled = True
                raise
            finally:
                entry.done.set()
        else:
            await entry.done.wait()
            if entry.cancelled:
                return await self.get(key, work)  # the worker was cancelled: do it ourselves
        if entry.error is not None:
            raise entry.error
        return entry.value  # type: ignore[return-value]

    def _prune(self, now: float) -> None:
        if len(self._entries) <= self.max_entries:
            return
        for key in [k for k, e in self._entries.items() if e.done.is_set() and e.expires <= now]:
            del self._entries[key]
