"""SingleFlight: concurrent lookups of one key share one call; answers live for a TTL.

Time is a fake clock (the module's ``anyio.current_time``), so TTLs are exact and no test
sleeps to let them pass.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from types import ModuleType
from typing import Any

import anyio
import pytest

from fabstir_sidecar.discovery import singleflight as singleflight_module
from fabstir_sidecar.discovery.singleflight import SingleFlight

pytestmark = pytest.mark.anyio


def peek(flight: SingleFlight[Any], key: str) -> Any:
    """The cached value of ``key`` if fresh and successful (None otherwise), read without
    calling anything: what the tests assert about the cache."""
    entry = flight._entries.get(key)
    now = singleflight_module.anyio.current_time()  # the clock the tests may patch
    fresh = entry and entry.done.is_set() and entry.expires > now
    return entry.value if fresh and entry.error is None else None


class FakeClock:
    """Stands in for the ``anyio`` module inside singleflight: ``current_time`` is ours."""

    def __init__(self, real: ModuleType) -> None:
        self._real = real
        self.now = 1000.0

    def current_time(self) -> float:
        return self.now

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    fake = FakeClock(anyio)
    monkeypatch.setattr(singleflight_module, "anyio", fake)
    return fake


class Work:
    """A counted piece of work that can be held until released."""

    def __init__(self, value: Any = "answer", *, error: Exception | None = None) -> None:
        self.value = value
        self.error = error
        self.runs = 0
        self.started = anyio.Event()
        self.release = anyio.Event()
        self.hold = False

    async def __call__(self) -> Any:
        self.runs += 1
        self.started.set()
        if self.hold:
            await self.release.wait()
        if self.error is not None:
            raise self.error
        return self.value


async def gather(n: int, call: Callable[[], Awaitable[Any]]) -> list[Any]:
    results: list[Any] = []

    async def one() -> None:
        try:
            results.append(await call())
        except Exception as exc:
            results.append(exc)

    async with anyio.create_task_group() as tg:
        for _ in range(n):
            tg.start_soon(one)
    return results


async def test_concurrent_callers_share_one_call(clock: FakeClock) -> None:
    flight: SingleFlight[str] = SingleFlight(ttl=5.0)
    work = Work("shared")
    work.hold = True
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            results: list[str] = []

            async def one() -> None:
                results.append(await flight.get("k", work))

            for _ in range(20):
                tg.start_soon(one)
            await work.started.wait()
            await anyio.wait_all_tasks_blocked()
            assert results == []  # everyone waits for the one call in flight
            work.release.set()
    assert results == ["shared"] * 20
    assert work.runs == 1
    assert flight.calls == 1


async def test_different_keys_do_not_share(clock: FakeClock) -> None:
    flight: SingleFlight[str] = SingleFlight(ttl=5.0)
    a, b = Work("a"), Work("b")
    assert await flight.get("a", a) == "a"
    assert await flight.get("b", b) == "b"
    assert (a.runs, b.runs, flight.calls) == (1, 1, 2)


async def test_an_answer_is_reused_until_its_ttl_expires(clock: FakeClock) -> None:
    flight: SingleFlight[str] = SingleFlight(ttl=5.0)
    work = Work("v1")
    assert await flight.get("k", work) == "v1"
    assert peek(flight, "k") == "v1"

    clock.now += 4.9
    work.value = "v2"
    assert await flight.get("k", work) == "v1"  # fresh: cached, no second run
    assert work.runs == 1

    clock.now += 0.1  # exactly at expiry: stale
    assert peek(flight, "k") is None
    assert await flight.get("k", work) == "v2"
    assert work.runs == 2 and flight.calls == 2
    assert peek(flight, "k") == "v2"


async def test_errors_are_cached_for_error_ttl_then_retried(clock: FakeClock) -> None:
    flight: SingleFlight[str] = SingleFlight(ttl=60.0, error_ttl=2.0)
    boom = ValueError("host unreachable")
    work = Work(error=boom)

    with pytest.raises(ValueError, match="host unreachable") as first:
        await flight.get("k", work)
    assert first.value is boom
    assert peek(flight, "k") is None  # a failure is never a value

    clock.now += 1.9
    results = await gather(3, lambda: flight.get("k", work))
    assert results == [boom, boom, boom]  # the stored failure, not a new call
    assert work.runs == 1

    clock.now += 0.1
    work.error = None
    work.value = "recovered"
    assert await flight.get("k", work) == "recovered"
    assert work.runs == 2
    clock.now += 59.0
    assert await flight.get("k", work) == "recovered"  # a success lives for ttl
    assert work.runs == 2


async def test_error_ttl_defaults_to_ttl(clock: FakeClock) -> None:
    flight: SingleFlight[str] = SingleFlight(ttl=3.0)
    assert flight.error_ttl == 3.0
    work = Work(error=RuntimeError("x"))
    with pytest.raises(RuntimeError):
        await flight.get("k", work)
    clock.now += 2.9
    with pytest.raises(RuntimeError):
        await flight.get("k", work)
    assert work.runs == 1
    clock.now += 0.1
    with pytest.raises(RuntimeError):
        await flight.get("k", work)
    assert work.runs == 2


async def test_a_cancelled_worker_lets_a_waiter_redo_the_work(clock: FakeClock) -> None:
    flight: SingleFlight[str] = SingleFlight(ttl=5.0)
    doomed = Work("never")
    doomed.hold = True  # blocks until cancelled
    redo = Work("redone")
    results: list[str] = []

    async def wait_for_it() -> None:
        results.append(await flight.get("k", redo))

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            worker_scope = anyio.CancelScope()

            async def worker() -> None:
                with worker_scope:
                    await flight.get("k", doomed)

            tg.start_soon(worker)
            await doomed.started.wait()
            tg.start_soon(wait_for_it)
            tg.start_soon(wait_for_it)
            await anyio.wait_all_tasks_blocked()
            assert results == []
            worker_scope.cancel()  # the worker goes away mid-call
    assert results == ["redone", "redone"]
    assert doomed.runs == 1
    assert redo.runs == 1  # one of the two waiters redid it, the other shared that call
    assert flight.calls == 2
    assert await flight.get("k", Work("later")) == "redone"  # and the answer is cached


async def test_a_cancelled_worker_with_no_waiter_leaves_nothing_behind(clock: FakeClock) -> None:
    flight: SingleFlight[str] = SingleFlight(ttl=5.0)
    doomed = Work()
    doomed.hold = True
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(flight.get, "k", doomed)
            await doomed.started.wait()
            tg.cancel_scope.cancel()
    assert peek(flight, "k") is None
    assert await flight.get("k", Work("fresh")) == "fresh"
    assert flight.calls == 2


async def test_forget_drops_a_cached_answer(clock: FakeClock) -> None:
    flight: SingleFlight[str] = SingleFlight(ttl=5.0)
    work = Work("v")
    await flight.get("k", work)
    flight.forget("k")
    assert peek(flight, "k") is None
    await flight.get("k", work)
    assert work.runs == 2


async def test_expired_entries_are_pruned_beyond_max_entries(clock: FakeClock) -> None:
    flight: SingleFlight[int] = SingleFlight(ttl=1.0, max_entries=4)
    for i in range(4):
        await flight.get(i, Work(i))
    clock.now += 2.0  # all four expire
    await flight.get("new", Work(99))  # over the bound: the stale ones go
    assert len(flight._entries) <= 4
    assert peek(flight, "new") == 99
