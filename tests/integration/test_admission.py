"""Admission with real daemons: bursts are served, overload is answered, attacks are contained.

A burst from one client must be served without a single reset; over capacity every job
completes through ``busy`` answers and ``retry_after_ms``; a job whose request reached a host
is never sent again; and while a hostile peer floods, stalls or hogs, an honest client's
jobs still succeed. Speed is measured in bench/admission.py, never here.
"""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import AsyncIterator
from dataclasses import dataclass

import anyio
import pytest

from fabstir_sidecar.backend import Completion
from fabstir_sidecar.client import FabstirClient, RetryConfig
from fabstir_sidecar.core.errors import (
    FabstirError,
    HostBusyError,
    JobOutcomeUnknownError,
    RetryExhaustedError,
)
from fabstir_sidecar.daemon.control import DaemonControl
from fabstir_sidecar.daemon.stream import DaemonStream
from fabstir_sidecar.host.backends.echo import EchoBackend
from fabstir_sidecar.host.service import HostConfig, HostService
from fabstir_sidecar.node.manager import DiscoveryManager
from fabstir_sidecar.protocols import ids
from fabstir_sidecar.wire.framing import encode_json_frame
from fabstir_sidecar.wire.messages import JobRequest
from tests.integration.helpers import eventually, make_node, raw_daemon

pytestmark = [pytest.mark.integration, pytest.mark.anyio]

MODEL = "m1"
TEST_DEADLINE = 120.0
RETRY = RetryConfig(attempts=3, initial_backoff_s=0.02, max_backoff_s=0.5, max_total_s=90.0)


@dataclass
class Hosted:
    node: DiscoveryManager
    host: HostService
    addr: str  # full multiaddr


@contextlib.asynccontextmanager
async def hosted(
    p2pd_path: str, config: HostConfig, backend: EchoBackend | None = None, **node: object
) -> AsyncIterator[Hosted]:
    async with make_node(p2pd_path, **node) as victim:
        host = HostService(victim, config, backend or EchoBackend())
        await host.start()
        yield Hosted(victim, host, (await victim.get_addrs())[0])


async def connect(attacker: DaemonControl, target: Hosted) -> None:
    _, addrs = await target.node.control.identify()
    await attacker.connect(target.node.peer_id, list(addrs), timeout=5.0)


async def honest_jobs(client: FabstirClient, addr: str, count: int, tag: str) -> None:
    """``count`` sequential jobs that must all succeed."""
    for i in range(count):
        prompt = f"{tag} {i}"
        result = await client.run_job(addr, MODEL, prompt)
        assert result.content == f"echo: {prompt}"


# --------------------------------------------------------------------- load


async def test_a_burst_of_200_jobs_from_one_client_is_served_without_a_reset(
    p2pd_path: str,
) -> None:
    with anyio.fail_after(TEST_DEADLINE):
        async with (
            hosted(p2pd_path, HostConfig(models=(MODEL,), max_jobs=1000)) as h,
            make_node(p2pd_path) as client_node,
        ):
            # No retries and no pacing: every one of the 200 streams must be answered.
            client = FabstirClient(client_node, retry=RetryConfig.none(), pacing=False)
            results: list[str] = []

            async def one(i: int) -> None:
                results.append((await client.run_job(h.addr, MODEL, f"burst {i}")).content)

            async with anyio.create_task_group() as tg:
                for i in range(200):
                    tg.start_soon(one, i)
            assert sorted(results) == sorted(f"echo: burst {i}" for i in range(200))
            counters = h.host.admission
            assert counters.accepted[ids.JOB] == 200
            assert counters.reset[ids.JOB] == 0 and counters.busy[ids.JOB] == 0
            assert h.host.stats.results == 200


async def test_over_capacity_every_job_completes_through_busy_answers(p2pd_path: str) -> None:
    with anyio.fail_after(TEST_DEADLINE):
        async with (
            hosted(
                p2pd_path, HostConfig(models=(MODEL,), max_jobs=4), EchoBackend(delay=0.005)
            ) as h,
            make_node(p2pd_path) as client_node,
            make_node(p2pd_path) as probe_node,
        ):
            greedy = FabstirClient(client_node, retry=RETRY, pacing=False)
            paced = FabstirClient(probe_node, retry=RETRY)
            probe = FabstirClient(probe_node, retry=RetryConfig.none(), pacing=False)
            done: list[str] = []
            busy: list[HostBusyError] = []

            async def one(client: FabstirClient, i: int) -> None:
                done.append((await client.run_job(h.addr, MODEL, f"job {i}")).content)

            async def probing() -> None:
                while len(done) < 150 and not busy:
                    try:
                        await probe.run_job(h.addr, MODEL, "probe")
                    except RetryExhaustedError as exc:
                        busy.extend(e for e in exc.failures if isinstance(e, HostBusyError))
                    await anyio.sleep(0.01)

            async with anyio.create_task_group() as tg:
                for i in range(200):
                    tg.start_soon(one, greedy if i % 2 else paced, i)
                tg.start_soon(probing)
            assert sorted(done) == sorted(f"echo: job {i}" for i in range(200))
            assert h.host.admission.busy[ids.JOB] > 0
            assert h.host.admission.reset[ids.JOB] == 0
            assert busy, "the probe never saw a busy answer"
            assert all(e.code == "busy" and e.retry_after for e in busy), busy
            # the paced client learnt the host's capacity from its status record
            assert paced.pacers[h.node.peer_id].limit <= 4
            assert h.host.active_jobs == 0


class DyingBackend(EchoBackend):
    """Counts the jobs it was given, then kills its host's daemon (the host "dies")."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0
        self.pid: int | None = None

    async def complete(self, request: JobRequest) -> Completion:
        self.calls += 1
        assert self.pid is not None
        os.kill(self.pid, signal.SIGKILL)
        await anyio.sleep_forever()
        raise AssertionError("unreachable")


async def test_a_job_that_reached_a_host_that_died_is_not_sent_again(p2pd_path: str) -> None:
    backend = DyingBackend()
    with anyio.fail_after(TEST_DEADLINE):
        async with (
            hosted(p2pd_path, HostConfig(models=(MODEL,), max_jobs=4), backend) as h,
            make_node(p2pd_path) as client_node,
        ):
            backend.pid = h.node.daemon_pid
            client = FabstirClient(client_node, retry=RETRY, job_timeout=10.0)
            with pytest.raises(JobOutcomeUnknownError) as info:
                await client.run_job(h.addr, MODEL, "once only")
            assert "may have run" in str(info.value) or "outcome" in str(info.value).lower()
            await anyio.sleep(1.0)  # nothing is re-sent later either (the daemon restarts)
            assert backend.calls == 1


async def test_a_stopping_host_answers_shutting_down_and_drains(p2pd_path: str) -> None:
    with anyio.fail_after(TEST_DEADLINE):
        async with (
            hosted(p2pd_path, HostConfig(models=(MODEL,), max_jobs=4), EchoBackend(delay=0.3)) as h,
            make_node(p2pd_path) as client_node,
        ):
            client = FabstirClient(client_node, retry=RetryConfig.none())
            results: list[str] = []

            async def slow() -> None:
                results.append((await client.run_job(h.addr, MODEL, "a b")).content)

            async with anyio.create_task_group() as tg:
                tg.start_soon(slow)
                await eventually(lambda: h.host.active_jobs == 1)
                stopping = anyio.Event()

                async def stop() -> None:
                    assert await h.host.stop(drain_timeout=10.0)
                    stopping.set()

                tg.start_soon(stop)
                await eventually(lambda: h.host.stopping)
                with pytest.raises(RetryExhaustedError) as info:
                    await client.run_job(h.addr, MODEL, "too late")
                assert isinstance(info.value.failures[0], HostBusyError)
                assert info.value.failures[0].code == "shutting_down"
                await stopping.wait()
            assert results == ["echo: a b"]  # the job in flight finished
            assert h.host.admission.shutting_down[ids.JOB] == 1


# ------------------------------------------------------------------ attacks


async def test_a_flood_of_2000_unread_streams_does_not_lock_an_honest_client_out(
    p2pd_path: str,
) -> None:
    with anyio.fail_after(TEST_DEADLINE):
        async with (
            hosted(p2pd_path, HostConfig(models=(MODEL,), max_jobs=8)) as h,
            make_node(p2pd_path) as honest_node,
            raw_daemon(p2pd_path) as (_, attacker, _),
        ):
            await connect(attacker, h)
            honest = FabstirClient(honest_node, retry=RetryConfig.none())
            await honest_jobs(honest, h.addr, 1, "warm up")
            request = encode_json_frame(
                {"type": "job_request", "job_id": "x", "model": MODEL, "prompt": "a"}
            )
            opened: list[DaemonStream] = []
            limiter = anyio.CapacityLimiter(64)

            async def open_one(i: int) -> None:
                async with limiter:
                    with contextlib.suppress(FabstirError):
                        stream = await attacker.open_stream(h.node.peer_id, [ids.JOB], timeout=10)
                        opened.append(stream)
                        if i % 2:  # half send a request they never read the answer to
                            await stream.send(request)

            async with contextlib.AsyncExitStack() as streams:
                async with anyio.create_task_group() as tg:
                    for i in range(2000):
                        tg.start_soon(open_one, i)
                    await honest_jobs(honest, h.addr, 10, "during the flood")
                for stream in opened:
                    streams.push_async_callback(stream.aclose)
                await honest_jobs(honest, h.addr, 10, "flood open")
                assert h.host.admission.reset[ids.JOB] > 0  # the flood met the hard cap
            await honest_jobs(honest, h.addr, 3, "after the flood")
            await eventually(lambda: h.host.active_jobs == 0)


async def test_slowloris_from_ten_identities_does_not_lock_an_honest_client_out(
    p2pd_path: str,
) -> None:
    with anyio.fail_after(TEST_DEADLINE):
        async with contextlib.AsyncExitStack() as stack:
            # A long connection timeout: the short request deadline is what cuts them.
            h = await stack.enter_async_context(
                hosted(p2pd_path, HostConfig(models=(MODEL,), max_jobs=8), connection_timeout=30.0)
            )
            honest = FabstirClient(
                await stack.enter_async_context(make_node(p2pd_path)), retry=RetryConfig.none()
            )
            attackers = [
                (await stack.enter_async_context(raw_daemon(p2pd_path))).control for _ in range(10)
            ]
            streams: list[DaemonStream] = []
            started = anyio.current_time()
            for attacker in attackers:
                await connect(attacker, h)
                for _ in range(30):
                    streams.append(
                        await attacker.open_stream(h.node.peer_id, [ids.JOB], timeout=10)
                    )
            for stream in streams:
                stack.push_async_callback(stream.aclose)
            await honest_jobs(honest, h.addr, 10, "during slowloris")
            # they are cut at the request deadline (5 s), long before connection_timeout
            await eventually(lambda: h.host.admission.timeout[ids.JOB] >= 300, timeout=20.0)
            assert anyio.current_time() - started < 25.0
            await honest_jobs(honest, h.addr, 3, "after slowloris")


async def test_never_read_streamed_jobs_cannot_hog_every_slot(p2pd_path: str) -> None:
    words = 200_000
    backend = EchoBackend(max_tokens_limit=words + 1, default_max_tokens=words + 1)
    config = HostConfig(models=(MODEL,), max_jobs=4, write_timeout=2.0)
    with anyio.fail_after(TEST_DEADLINE):
        async with (
            hosted(p2pd_path, config, backend) as h,
            make_node(p2pd_path) as honest_node,
            raw_daemon(p2pd_path) as (_, attacker, _),
        ):
            await connect(attacker, h)
            honest = FabstirClient(honest_node, retry=RETRY)
            prompt = " ".join(["a"] * words)
            hogs: list[DaemonStream] = []
            async with contextlib.AsyncExitStack() as stack:
                for i in range(4):
                    stream = await attacker.open_stream(h.node.peer_id, [ids.JOB], timeout=10)
                    stack.push_async_callback(stream.aclose)
                    hogs.append(stream)
                    job = JobRequest(
                        job_id=f"hog-{i}", model=MODEL, prompt=prompt, max_tokens=words + 1
                    )
                    await stream.send(encode_json_frame({**job.to_json(), "stream": True}))
                await eventually(lambda: h.host.active_jobs >= 3)
                # one peer never holds the last slot: an honest job still runs now
                await honest_jobs(honest, h.addr, 5, "while hogged")
                # and the stalled readers lose their streams, and slots, at the write deadline
                await eventually(lambda: h.host.admission.timeout[ids.JOB] >= 3, timeout=60.0)
                await eventually(lambda: h.host.active_jobs == 0, timeout=10.0)
            await honest_jobs(honest, h.addr, 3, "after the hogs")
