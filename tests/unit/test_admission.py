"""Admission logic without a network: fair shares, job slots, retry estimates, pacing, logs."""

from __future__ import annotations

import logging
from typing import Any

import anyio
import anyio.lowlevel
import pytest

from fabstir_sidecar.core.admission import (
    AdmissionCounters,
    FairShare,
    LogSummary,
    RetryEstimator,
)
from fabstir_sidecar.core.errors import ConfigError, HostBusyError
from fabstir_sidecar.host.backends.echo import EchoBackend
from fabstir_sidecar.host.service import HostConfig, HostService
from fabstir_sidecar.rpc.limits import RpcLimits
from fabstir_sidecar.rpc.pacing import Pacer
from fabstir_sidecar.wire.messages import JobRequest

JOB = "/fabstir-llm/job/1.0.0"


# ------------------------------------------------------------------ FairShare


def test_a_lone_peer_may_take_everything_up_to_its_cap() -> None:
    shares = FairShare(10, 10)
    assert all(shares.acquire("a") for _ in range(10))
    assert shares.refusal("a") == "full"
    assert shares.refusal("b") == "full"


def test_under_contention_a_greedy_peer_is_held_to_its_fair_share() -> None:
    shares = FairShare(10, 10)
    for _ in range(5):
        shares.take("a")
    shares.take("b")
    # 6 of 10 taken: contention; two holders, fair share 5: a is refused, b and c are not
    assert shares.refusal("a") == "fair share"
    assert shares.refusal("b") is None
    assert shares.refusal("c") is None


def test_min_share_and_per_peer_cap() -> None:
    shares = FairShare(10, 3, min_share=2)
    assert [shares.acquire("a") for _ in range(4)] == [True, True, True, False]
    assert shares.refusal("a") == "peer cap"
    shares.release("a")
    shares.release("a")
    shares.release("a")
    shares.release("a")  # one too many: never negative
    assert shares.total == 0 and shares.by_peer == {}


def test_fair_share_rejects_nonsense() -> None:
    with pytest.raises(ValueError):
        FairShare(0, 1)


# -------------------------------------------------------------- counters, logs


def test_counters_are_plain_per_protocol_dicts() -> None:
    counters = AdmissionCounters()
    counters.busy[JOB] += 2
    counters.reset["/x"] += 1
    assert counters.as_dict()["busy"] == {JOB: 2}
    assert counters.as_dict()["reset"] == {"/x": 1}
    assert counters.as_dict()["accepted"] == {}


def test_log_summary_logs_once_per_interval_with_counts(caplog: pytest.LogCaptureFixture) -> None:
    summary = LogSummary(logging.getLogger("t.summary"), "resets", interval=3600)
    with caplog.at_level(logging.INFO, logger="t.summary"):
        for _ in range(500):
            summary.count("job peer cap")
        summary.count("job full")
        assert len(caplog.records) == 1  # the first one, at once
        summary.flush()
    assert len(caplog.records) == 2
    last: Any = caplog.records[-1]
    assert last.counts == {"job peer cap": 499, "job full": 1}
    assert last.total == 500


# ------------------------------------------------------------------ job slots


def host(max_jobs: int) -> HostService:
    return HostService(object(), HostConfig(models=("m",), max_jobs=max_jobs), EchoBackend())  # type: ignore[arg-type]


def test_one_peer_never_takes_the_last_slot_of_several() -> None:
    h = host(4)
    assert [h.try_admit("m", "hog", JOB) for _ in range(3)] == [None, None, None]
    hogged = h.try_admit("m", "hog", JOB)
    assert hogged is not None and hogged.code == "busy"
    assert h.try_admit("m", "honest", JOB) is None
    assert h.active_jobs == 4
    full = h.try_admit("m", "other", JOB)
    assert full is not None and full.code == "busy" and full.retry_after_ms
    assert h.admission.busy[JOB] == 2


def test_a_single_slot_host_serves_a_single_peer() -> None:
    h = host(1)
    assert h.try_admit("m", "a", JOB) is None
    h.release("a", 0.01)
    assert h.active_jobs == 0


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_retry_after_grows_while_busy_answers_outpace_finished_jobs() -> None:
    clock = Clock()
    estimate = RetryEstimator(clock=clock)
    first = estimate.busy(8)
    for _ in range(20):  # 100 busy answers per finished job, for 2 s
        clock.now += 0.1
        estimate.job_done(0.001)
        for _ in range(100):
            estimate.busy(8)
    assert estimate.retry_s > 10 * first
    assert estimate.retry_s <= 30.0
    clock.now += 10.0  # a quiet spell: the next refusal starts again from one job time
    assert estimate.busy(8) == pytest.approx(max(0.005, estimate.job_s / 8))


def test_a_few_refusals_after_a_quiet_host_get_a_short_wait() -> None:
    clock = Clock()
    estimate = RetryEstimator(clock=clock)
    clock.now += 60.0
    waits = []
    for _ in range(3):
        clock.now += 0.3
        waits.append(estimate.busy(8))
    assert max(waits) <= 0.05


def test_retry_after_shrinks_to_a_job_time_when_refusals_are_rare() -> None:
    clock = Clock()
    estimate = RetryEstimator(clock=clock)
    estimate.retry_s = 5.0
    for _ in range(40):  # many jobs finish, a busy answer now and then
        clock.now += 0.25
        for _ in range(50):
            estimate.job_done(0.2)
        estimate.busy(4)
    assert estimate.retry_s == pytest.approx(max(0.005, estimate.job_s / 4), rel=0.01)


def test_busy_answers_carry_retry_after_ms() -> None:
    h = host(2)
    h.try_admit("m", "a", JOB)
    h.try_admit("m", "b", JOB)
    refused = h.try_admit("m", "c", JOB)
    assert refused is not None and refused.retry_after_ms is not None
    assert refused.retry_after_ms >= 5


def test_model_not_served_and_config_checks() -> None:
    h = host(2)
    refused = h.try_admit("other", "a", JOB)
    assert refused is not None and refused.code == "model_not_served"
    with pytest.raises(ConfigError):
        HostConfig(models=("m",), max_jobs=4, max_streams=2)
    with pytest.raises(ConfigError):
        HostConfig(models=("m",), write_timeout=0)


def test_rpc_limits_pending_share_defaults() -> None:
    limits = RpcLimits(max_concurrent=100, max_per_peer=40)
    assert limits.pending_cap == 50 and limits.pending_per_peer == 20
    assert RpcLimits(read_timeout=1.0).first_read_timeout == 1.0
    assert RpcLimits(read_timeout=30.0).first_read_timeout == 5.0


# ------------------------------------------------------------------ echo bound


@pytest.mark.anyio
async def test_echo_output_is_bounded_without_max_tokens() -> None:
    backend = EchoBackend(default_max_tokens=10, max_tokens_limit=20)
    prompt = " ".join(["a"] * 1000)
    short = await backend.complete(JobRequest(job_id="j", model="m", prompt=prompt))
    assert short.tokens_used == 10 and short.finish_reason == "length"
    capped = await backend.complete(
        JobRequest(job_id="j", model="m", prompt=prompt, max_tokens=10_000)
    )
    assert capped.tokens_used == 20
    exact = await backend.complete(JobRequest(job_id="j", model="m", prompt="a b  "))
    assert exact.text == "echo: a b" and exact.finish_reason == "stop"


# ---------------------------------------------------------------------- pacing


@pytest.mark.anyio
async def test_pacer_queues_beyond_its_window_in_order() -> None:
    pacer = Pacer(initial=2)
    order: list[int] = []

    async def job(i: int) -> None:
        async with pacer.slot():
            order.append(i)
            await anyio.sleep(0.01)

    async with anyio.create_task_group() as tg:
        for i in range(6):
            tg.start_soon(job, i)
        await anyio.lowlevel.checkpoint()
        assert pacer.inflight <= 2
    assert sorted(order) == list(range(6))
    assert pacer.inflight == 0 and pacer.queued == 0
    assert pacer.window > 2  # successes grew it


@pytest.mark.anyio
async def test_pacer_shrinks_on_busy_and_respects_the_advertised_capacity() -> None:
    pacer = Pacer(initial=32)
    with pytest.raises(HostBusyError):
        async with pacer.slot():
            raise HostBusyError("busy", "full", peer_id="p", retry_after=0.01)
    assert pacer.window == pytest.approx(32 * 0.7)
    pacer.advertise(max_jobs=4, active_jobs=4)
    assert pacer.limit == 1  # no free slot: start at one
    for _ in range(100):
        async with pacer.slot():
            pass
    assert pacer.limit == 4  # never above max_jobs


@pytest.mark.anyio
async def test_a_cancelled_waiter_gives_its_turn_away() -> None:
    pacer = Pacer(initial=1)
    await pacer.acquire()
    with anyio.move_on_after(0.05):
        await pacer.acquire()
    assert pacer.queued == 0 and pacer.inflight == 1
    pacer.release("ok")
    await pacer.acquire()
    assert pacer.inflight == 1


@pytest.mark.anyio
async def test_a_full_waiting_pool_cuts_its_oldest_stream_for_a_newcomer() -> None:
    from fabstir_sidecar.rpc.server import EVICT_AFTER, _Waiting

    waiting = _Waiting(RpcLimits(max_concurrent=4, max_per_peer=4, min_share=1))  # pool of 2
    old = [anyio.CancelScope(), anyio.CancelScope()]
    assert waiting.enter("sybil-1", old[0]) is None
    assert waiting.enter("sybil-2", old[1]) is None
    young = anyio.CancelScope()
    assert waiting.enter("honest", young) == "full"  # nobody waited long enough yet
    await anyio.sleep(EVICT_AFTER + 0.05)
    assert waiting.enter("honest", young) is None
    assert old[0].cancel_called and not old[1].cancel_called
    waiting.leave("sybil-1", old[0])
    waiting.leave("honest", young)
    waiting.leave("sybil-2", old[1])
    assert waiting.shares.total == 0
