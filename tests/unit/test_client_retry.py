"""FabstirClient._retrying: which failures are retried, how long, and what is reported."""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import anyio
import pytest

from fabstir_sidecar.client import FabstirClient, RetryConfig
from fabstir_sidecar.core.errors import (
    ConfigError,
    DaemonUnavailableError,
    FabstirError,
    FabstirTimeoutError,
    JobRejectedError,
    MalformedMessageError,
    MessageTooLargeError,
    PeerUnreachableError,
    RemoteError,
    RetryExhaustedError,
    StreamClosedError,
)

pytestmark = pytest.mark.anyio

DEADLINE = 10.0
FAST = RetryConfig(attempts=4, initial_backoff_s=0.001, max_backoff_s=0.005)

TRANSIENT: list[Callable[[int], FabstirError]] = [
    lambda n: PeerUnreachableError(f"dial failed {n}", peer_id="p"),
    lambda n: StreamClosedError(f"stream broke {n}"),
    lambda n: FabstirTimeoutError(f"no response {n}"),
    lambda n: DaemonUnavailableError(f"p2pd restarting {n}"),
]
TRANSIENT_IDS = ["unreachable", "stream-closed", "timeout", "daemon-unavailable"]

PERMANENT: list[BaseException] = [
    JobRejectedError("busy", peer_id="p"),
    RemoteError("bad_request", "prompt: missing", peer_id="p"),
    RemoteError("internal", "backend failed", peer_id="p"),
    MessageTooLargeError(2_000_000, 1_048_576),
    ConfigError("peer", "x", "not a multiaddr"),
    MalformedMessageError("status describes another peer"),
    ValueError("not ours at all"),
]
PERMANENT_IDS = [
    "rejected",
    "bad-request",
    "internal",
    "too-large",
    "config",
    "malformed",
    "foreign",
]


def make_client(policy: RetryConfig) -> FabstirClient:
    node = SimpleNamespace(config=SimpleNamespace(connection_timeout=5.0))
    return FabstirClient(node, retry=policy)  # type: ignore[arg-type]


class Attempts:
    """An attempt function failing with ``failures`` in turn, then returning ``result``."""

    def __init__(self, failures: list[BaseException], result: Any = "ok") -> None:
        self.failures = failures
        self.result = result
        self.calls = 0
        self.times: list[float] = []

    async def __call__(self) -> Any:
        self.times.append(time.monotonic())
        self.calls += 1
        if self.calls <= len(self.failures):
            raise self.failures[self.calls - 1]
        return self.result


@pytest.mark.parametrize("make_error", TRANSIENT, ids=TRANSIENT_IDS)
async def test_transient_failures_are_retried_until_success(
    make_error: Callable[[int], FabstirError],
) -> None:
    attempt = Attempts([make_error(1), make_error(2), make_error(3)], result=42)
    with anyio.fail_after(DEADLINE):
        assert await make_client(FAST)._retrying("job j on p", attempt) == 42
    assert attempt.calls == 4


@pytest.mark.parametrize("make_error", TRANSIENT, ids=TRANSIENT_IDS)
async def test_transient_failures_exhaust_the_attempts(
    make_error: Callable[[int], FabstirError],
) -> None:
    errors = [make_error(n) for n in range(1, 10)]
    attempt = Attempts(errors)
    with anyio.fail_after(DEADLINE), pytest.raises(RetryExhaustedError) as info:
        await make_client(FAST)._retrying("job j on p", attempt)
    assert attempt.calls == 4
    exc = info.value
    assert exc.failures == errors[:4]
    assert exc.operation == "job j on p"
    assert exc.__cause__ is errors[3]
    message = str(exc)
    assert message.startswith("job j on p failed after 4 attempts")
    for n, error in enumerate(errors[:4], start=1):
        assert f"#{n}: {type(error).__name__}: {error}" in message
    assert "#5" not in message


async def test_exhaustion_lists_mixed_failures_in_order() -> None:
    errors: list[BaseException] = [
        PeerUnreachableError("connection refused", peer_id="p"),
        FabstirTimeoutError("no response within 1.0s"),
        StreamClosedError("stream reset"),
    ]
    attempt = Attempts(errors)
    policy = RetryConfig(attempts=3, initial_backoff_s=0.001, max_backoff_s=0.005)
    with anyio.fail_after(DEADLINE), pytest.raises(RetryExhaustedError) as info:
        await make_client(policy)._retrying("status of p", attempt)
    assert info.value.failures == errors
    message = str(info.value)
    assert "after 3 attempts" in message
    positions = [message.index(f"#{n}: {type(e).__name__}") for n, e in enumerate(errors, 1)]
    assert positions == sorted(positions)
    for reason in ("connection refused", "no response within 1.0s", "stream reset"):
        assert reason in message


async def test_a_single_attempt_policy_still_reports_the_failure() -> None:
    attempt = Attempts([PeerUnreachableError("no addresses", peer_id="p")])
    with anyio.fail_after(DEADLINE), pytest.raises(RetryExhaustedError) as info:
        await make_client(RetryConfig.none())._retrying("job", attempt)
    assert attempt.calls == 1
    assert len(info.value.failures) == 1
    assert "no addresses" in str(info.value)


@pytest.mark.parametrize("error", PERMANENT, ids=PERMANENT_IDS)
async def test_permanent_failures_are_never_retried(error: BaseException) -> None:
    attempt = Attempts([error, error, error])
    policy = RetryConfig(attempts=5, initial_backoff_s=1.0, max_backoff_s=1.0)
    started = time.monotonic()
    with anyio.fail_after(DEADLINE), pytest.raises(type(error)) as info:
        await make_client(policy)._retrying("job", attempt)
    assert info.value is error  # raised as is, not wrapped
    assert attempt.calls == 1
    assert time.monotonic() - started < 0.9  # no backoff slept


@pytest.mark.parametrize("error", PERMANENT[:3], ids=PERMANENT_IDS[:3])
async def test_a_permanent_failure_after_transient_ones_stops_the_retries(
    error: BaseException,
) -> None:
    attempt = Attempts([StreamClosedError("reset"), error, StreamClosedError("reset")])
    with anyio.fail_after(DEADLINE), pytest.raises(type(error)) as info:
        await make_client(FAST)._retrying("job", attempt)
    assert info.value is error
    assert attempt.calls == 2


async def test_max_total_time_stops_the_retries_before_the_attempts_run_out() -> None:
    attempt = Attempts([PeerUnreachableError(f"refused {n}") for n in range(1000)])
    policy = RetryConfig(attempts=1000, max_total_s=0.4, initial_backoff_s=0.05, max_backoff_s=0.05)
    started = time.monotonic()
    with anyio.fail_after(DEADLINE), pytest.raises(RetryExhaustedError) as info:
        await make_client(policy)._retrying("job", attempt)
    elapsed = time.monotonic() - started
    assert 0.4 <= elapsed < 1.5
    assert 2 <= attempt.calls < 1000
    assert len(info.value.failures) == attempt.calls
    assert f"after {attempt.calls} attempts" in str(info.value)


async def test_backoff_starts_at_the_initial_backoff_and_doubles() -> None:
    """Jitter is proportional to the policy: small backoffs stay small (tenacity's default
    jitter of up to 1 s would make every wait here close to half a second or more)."""
    initial = 0.02
    attempt = Attempts([StreamClosedError(f"reset {n}") for n in range(4)])
    policy = RetryConfig(attempts=4, initial_backoff_s=initial, max_backoff_s=5.0)
    with anyio.fail_after(DEADLINE), pytest.raises(RetryExhaustedError):
        await make_client(policy)._retrying("job", attempt)
    gaps = [b - a for a, b in itertools.pairwise(attempt.times)]
    assert len(gaps) == 3
    for n, gap in enumerate(gaps):
        base = initial * 2**n
        assert base * 0.9 <= gap < 2 * base + 0.08, gaps


async def test_backoff_never_exceeds_the_maximum() -> None:
    initial, cap = 0.05, 0.1
    attempt = Attempts([StreamClosedError(f"reset {n}") for n in range(5)])
    policy = RetryConfig(attempts=5, initial_backoff_s=initial, max_backoff_s=cap)
    with anyio.fail_after(DEADLINE), pytest.raises(RetryExhaustedError):
        await make_client(policy)._retrying("job", attempt)
    gaps = [b - a for a, b in itertools.pairwise(attempt.times)]
    assert len(gaps) == 4
    assert all(gap < cap + 0.08 for gap in gaps), gaps  # the cap holds (plus scheduling slack)
    assert all(gap >= cap * 0.9 for gap in gaps[1:]), gaps  # and is reached


async def test_success_on_the_first_attempt_does_not_wait() -> None:
    attempt = Attempts([], result={"content": "x"})
    policy = RetryConfig(attempts=3, initial_backoff_s=1.0, max_backoff_s=1.0)
    started = time.monotonic()
    with anyio.fail_after(DEADLINE):
        assert await make_client(policy)._retrying("job", attempt) == {"content": "x"}
    assert attempt.calls == 1
    assert time.monotonic() - started < 0.5


async def test_cancellation_during_backoff_is_not_swallowed() -> None:
    attempt = Attempts([StreamClosedError(f"reset {n}") for n in range(10)])
    policy = RetryConfig(attempts=10, initial_backoff_s=5.0, max_backoff_s=5.0)
    with anyio.fail_after(DEADLINE):
        with anyio.move_on_after(0.2) as scope:
            await make_client(policy)._retrying("job", attempt)
    assert scope.cancelled_caught
    assert attempt.calls == 1


def test_client_uses_the_node_connection_timeout_by_default() -> None:
    client = make_client(FAST)
    assert client.request_timeout == 5.0
    assert client.retry is FAST
