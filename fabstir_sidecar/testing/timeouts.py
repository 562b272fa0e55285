"""pytest-timeout for async tests with test networks: cancel the test, then tear down.

pytest-timeout's ``signal`` method raises in the main thread wherever it is; in an async
test that is usually inside the event loop's wait, outside the test's coroutine. The test
coroutine then keeps running in anyio's runner task, and the fixtures' teardown (stopping
the networks) is queued behind it: a test awaiting something that never comes would hang
the session for ever with its daemons alive.

So, for async tests that use a fabstir fixture, the test body runs in a cancel scope and
the timeout cancels that scope from a timer thread (through the loop's token): the test
ends at its current ``await`` and the teardown runs at once. pytest-timeout's own timer is
kept as a backstop (``BACKSTOP`` seconds later) for hangs outside the test body. The
``thread`` method is left alone: it ends the process, and the daemons die with it
(the library gives them a parent-death signal).
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import threading
from collections.abc import Awaitable, Callable, Generator
from dataclasses import dataclass, field
from typing import Any

import anyio
import anyio.from_thread
import anyio.lowlevel
import pytest

BACKSTOP = 10.0  # seconds after our timeout that pytest-timeout's own timer fires


@dataclass(slots=True)
class _Guard:
    timeout: float
    timer: threading.Timer | None = None
    scope: anyio.CancelScope | None = None
    token: Any = None
    fired: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)

    def fire(self) -> None:
        with self.lock:
            self.fired = True
            scope, token = self.scope, self.token
        if scope is not None:
            with contextlib.suppress(RuntimeError):  # the loop ended meanwhile
                anyio.from_thread.run_sync(scope.cancel, token=token)


_GUARD = pytest.StashKey[_Guard]()


def _guarded(item: pytest.Item, fixtures: frozenset[str]) -> bool:
    return (
        isinstance(item, pytest.Function)
        and inspect.iscoroutinefunction(item.obj)
        and bool(fixtures & set(item.fixturenames))
    )


class TimeoutGuard:
    """Registered by the plugin; its pytest-timeout hooks are optional (no pytest-timeout,
    no effect)."""

    def __init__(self, fixtures: frozenset[str]) -> None:
        self.fixtures = fixtures

    @pytest.hookimpl(optionalhook=True, tryfirst=True)
    def pytest_timeout_set_timer(self, item: pytest.Item, settings: Any) -> bool | None:
        if settings.method != "signal" or not _guarded(item, self.fixtures):
            return None
        pytest_timeout: Any = item.config.pluginmanager.get_plugin("timeout")
        guard = _Guard(settings.timeout)
        guard.timer = threading.Timer(settings.timeout, guard.fire)
        guard.timer.daemon = True
        guard.timer.start()
        item.stash[_GUARD] = guard
        backstop = settings._replace(timeout=settings.timeout + BACKSTOP)
        pytest_timeout.pytest_timeout_set_timer(item, backstop)
        return True

    @pytest.hookimpl(optionalhook=True, tryfirst=True)
    def pytest_timeout_cancel_timer(self, item: pytest.Item) -> bool | None:
        guard = item.stash.get(_GUARD, None)
        if guard is None:
            return None
        if guard.timer is not None:
            guard.timer.cancel()
        pytest_timeout: Any = item.config.pluginmanager.get_plugin("timeout")
        pytest_timeout.pytest_timeout_cancel_timer(item)
        return True

    @pytest.hookimpl(wrapper=True, tryfirst=True)
    def pytest_pyfunc_call(self, pyfuncitem: pytest.Function) -> Generator[None, object, object]:
        guard = pyfuncitem.stash.get(_GUARD, None)
        if guard is None:
            return (yield)
        original = pyfuncitem.obj
        pyfuncitem.obj = _cancellable(original, guard)
        try:
            return (yield)
        finally:
            pyfuncitem.obj = original


def _cancellable(test: Callable[..., Awaitable[object]], guard: _Guard) -> Callable[..., Any]:
    @functools.wraps(test)
    async def run(*args: Any, **kwargs: Any) -> object:
        with anyio.CancelScope() as scope:
            with guard.lock:
                guard.scope, guard.token = scope, anyio.lowlevel.current_token()
                if guard.fired:  # it fired during setup
                    scope.cancel()
            try:
                return await test(*args, **kwargs)
            finally:
                with guard.lock:
                    guard.scope = None
        if guard.fired:
            pytest.fail(
                f"Timeout (>{guard.timeout}s) from pytest-timeout: fabstir cancelled the "
                "test so that its networks could be stopped",
                pytrace=False,
            )
        return None

    return run
