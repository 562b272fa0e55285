"""Hostile peers against a host's framed protocols, through raw libp2p streams.

The attacker is a bare p2pd driven through DaemonControl: it opens the host's protocols and
writes whatever bytes it likes. Each case must get its specified answer (or a closed stream)
within the host's short read deadline, and an honest client must keep being served.
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import pytest

from fabstir_sidecar.client import FabstirClient, RetryConfig
from fabstir_sidecar.core.errors import StreamClosedError
from fabstir_sidecar.daemon.control import DaemonControl
from fabstir_sidecar.daemon.stream import DaemonStream
from fabstir_sidecar.host.backends.echo import EchoBackend
from fabstir_sidecar.host.service import HostConfig, HostService
from fabstir_sidecar.node.manager import DiscoveryManager
from fabstir_sidecar.protocols import ids
from fabstir_sidecar.wire.framing import encode_frame, encode_json_frame
from tests.frames import split_frames
from tests.integration.helpers import eventually, make_node, raw_daemon

pytestmark = [pytest.mark.integration, pytest.mark.anyio]

MODEL = "m1"
READ_TIMEOUT = 1.0  # the victim's connection_timeout: its read deadline
TEST_DEADLINE = 30.0
TWO_MIB = 2 * 1024 * 1024


# ------------------------------------------------------------------------ helpers


def rss_bytes() -> int:
    """VmRSS of this process (the victim host's Python side runs here)."""
    text = Path("/proc/self/status").read_text()
    match = re.search(r"^VmRSS:\s+(\d+)\s+kB", text, re.MULTILINE)
    assert match, "no VmRSS in /proc/self/status"
    return int(match.group(1)) * 1024


@dataclass
class Answer:
    """What came back on a raw stream: decoded frames, and how the stream ended."""

    frames: list[dict[str, Any]]
    reset: bool  # the stream broke (reset) rather than ending cleanly
    trailing: int  # bytes of an incomplete frame at the end
    elapsed: float

    @property
    def codes(self) -> list[str]:
        return [f.get("code", f.get("type", "?")) for f in self.frames]


def parse_frames(data: bytes) -> tuple[list[dict[str, Any]], int]:
    """Response frames in ``data`` (4-byte length + UTF-8 JSON), and leftover partial bytes."""
    payloads, pending = split_frames(data)
    return [json.loads(payload.decode("utf-8")) for payload in payloads], pending


async def read_answer(stream: DaemonStream, timeout: float = 5.0) -> Answer:
    """Everything until the host closes the stream; fails the test if it never does."""
    started = anyio.current_time()
    data = b""
    reset = False
    with anyio.fail_after(timeout):
        while True:
            try:
                chunk = await stream.receive_some()
            except StreamClosedError:
                reset = True
                break
            if not chunk:
                break
            data += chunk
            assert len(data) <= TWO_MIB, "the host sent far more than error frames"
    frames, trailing = parse_frames(data)
    return Answer(frames, reset, trailing, anyio.current_time() - started)


async def collect_answer(stream: DaemonStream, into: list[Answer]) -> None:
    into.append(await read_answer(stream))


@dataclass
class Arena:
    victim: DiscoveryManager
    host: HostService
    victim_addr: str  # full multiaddr
    attacker: DaemonControl
    honest: FabstirClient

    async def open(self, protocol: str = ids.JOB) -> DaemonStream:
        return await self.attacker.open_stream(self.victim.peer_id, [protocol], timeout=5.0)

    async def honest_job(self, prompt: str = "still serving") -> None:
        result = await self.honest.run_job(self.victim_addr, MODEL, prompt)
        assert result.content == f"echo: {prompt}"


@contextlib.asynccontextmanager
async def arena(p2pd_path: str, *, backend: EchoBackend | None = None) -> AsyncIterator[Arena]:
    async with (
        make_node(p2pd_path, connection_timeout=READ_TIMEOUT) as victim,
        make_node(p2pd_path) as honest_node,
        raw_daemon(p2pd_path) as (_, attacker, _),
    ):
        host = HostService(
            victim, HostConfig(models=(MODEL,), max_jobs=8), backend or EchoBackend()
        )
        await host.start()
        _, addrs = await victim.control.identify()
        await attacker.connect(victim.peer_id, list(addrs), timeout=5.0)
        honest = FabstirClient(honest_node, retry=RetryConfig.none(), job_timeout=10.0)
        yield Arena(victim, host, (await victim.get_addrs())[0], attacker, honest)


# -------------------------------------------------------------------- bad frames


def job(**fields: Any) -> bytes:
    return encode_json_frame({"type": "job_request", **fields})


BAD_REQUESTS = [
    pytest.param(ids.JOB, encode_frame(b"\xff\xfe\x00{}"), None, id="invalid-utf8"),
    pytest.param(ids.JOB, encode_frame(b"[1,2]"), None, id="json-array"),
    pytest.param(ids.JOB, encode_frame(b'"job_request"'), None, id="json-string"),
    pytest.param(ids.JOB, encode_frame(b'{"type":"job_request",'), None, id="broken-json"),
    pytest.param(ids.JOB, encode_frame(b""), None, id="empty-frame"),
    pytest.param(ids.JOB, job(job_id="j-1", model=MODEL), "j-1", id="missing-prompt"),
    pytest.param(ids.JOB, job(job_id="j-2", model=MODEL, prompt=5), "j-2", id="prompt-not-str"),
    pytest.param(ids.JOB, job(job_id="j-3", prompt="p"), "j-3", id="missing-model"),
    pytest.param(
        ids.JOB, job(job_id="j-4", model=MODEL, prompt="p", max_tokens=-1), "j-4", id="neg-max"
    ),
    pytest.param(ids.JOB, job(job_id="x" * 129, model=MODEL, prompt="p"), None, id="long-job-id"),
    pytest.param(ids.JOB, encode_json_frame({"type": "status_request"}), None, id="wrong-type"),
    pytest.param(ids.STATUS, encode_json_frame({"type": "job_request"}), None, id="status-type"),
    pytest.param(
        ids.DISCOVERY,
        encode_json_frame({"type": "discovery_request", "limit": 0}),
        None,
        id="discovery-limit",
    ),
    pytest.param(ids.INFERENCE, encode_json_frame({"Inference": [1]}), None, id="inference-shape"),
]


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"  # module scope: one event loop, so ``shared_arena`` can span tests


@pytest.fixture(scope="module")
async def shared_arena(p2pd_path: str) -> AsyncIterator[Arena]:
    """One victim for the many cheap bad-request cases (its own daemons: ~1 s to start)."""
    async with arena(p2pd_path) as a:
        yield a


@pytest.mark.parametrize(("protocol", "raw", "job_id"), BAD_REQUESTS)
async def test_malformed_request_is_answered_bad_request(
    shared_arena: Arena, protocol: str, raw: bytes, job_id: str | None
) -> None:
    a = shared_arena
    with anyio.fail_after(TEST_DEADLINE):
        stream = await a.open(protocol)
        async with stream:
            await stream.send(raw)
            answer = await read_answer(stream)
        assert answer.codes == ["bad_request"], answer
        assert answer.frames[0]["type"] == "error"
        assert answer.frames[0]["message"]
        assert answer.frames[0].get("job_id") == job_id
        assert answer.trailing == 0
        assert answer.elapsed < READ_TIMEOUT  # answered at once, not at the deadline
        assert a.host.active_jobs == 0
        await a.honest_job()


async def test_oversized_header_is_refused_without_reading_a_body(p2pd_path: str) -> None:
    with anyio.fail_after(TEST_DEADLINE):
        async with arena(p2pd_path) as a:
            # Only the header: an answer before the deadline proves no body was awaited.
            stream = await a.open()
            async with stream:
                await stream.send(TWO_MIB.to_bytes(4, "big"))
                answer = await read_answer(stream)
            assert answer.codes in (["too_large"], []), answer
            assert answer.elapsed < READ_TIMEOUT, answer
            if answer.frames:
                assert str(TWO_MIB) in answer.frames[0]["message"]

            # Header and a 2 MiB body pushed at the host, ten times over: refused each time,
            # and the host does not buffer what it refused.
            before = rss_bytes()
            body = b"\x00" * TWO_MIB
            for round_ in range(10):
                stream = await a.open()
                async with stream:
                    results: list[Answer] = []
                    async with anyio.create_task_group() as tg:
                        tg.start_soon(collect_answer, stream, results)
                        if round_ % 3 == 0:  # an honest job while the body is being pushed
                            tg.start_soon(a.honest_job, f"during round {round_}")
                        with contextlib.suppress(StreamClosedError):
                            with anyio.move_on_after(3.0):
                                await stream.send(TWO_MIB.to_bytes(4, "big") + body)
                assert results[0].codes in (["too_large"], []), results[0]
            growth = rss_bytes() - before
            assert growth < 50 * 1024 * 1024, f"RSS grew by {growth / 2**20:.1f} MiB"
            await a.honest_job()


async def test_truncated_frame_then_close_leaves_the_host_serving(p2pd_path: str) -> None:
    with anyio.fail_after(TEST_DEADLINE):
        async with arena(p2pd_path) as a:
            stream = await a.open()
            await stream.send((100).to_bytes(4, "big") + b"0123456789")
            started = anyio.current_time()
            await stream.aclose()

            # The host sees the stream end (not its read deadline) and lets it go.
            await eventually(lambda: a.host.admission.closed[ids.JOB] == 1, READ_TIMEOUT * 0.9)
            assert anyio.current_time() - started < READ_TIMEOUT
            assert a.host.stats.errors == 0 and a.host.active_jobs == 0
            await a.honest_job()
            # And the attacker itself can still talk properly afterwards.
            stream = await a.open()
            async with stream:
                await stream.send(job(job_id="ok-1", model=MODEL, prompt="fine"))
                answer = await read_answer(stream)
            assert [f["type"] for f in answer.frames] == ["job_result"]
            assert answer.frames[0]["content"] == "echo: fine"


@pytest.mark.parametrize(
    "partial",
    [
        pytest.param(b"", id="silent"),
        pytest.param(b"\x00\x00", id="half-header"),
        pytest.param((100).to_bytes(4, "big") + b'{"type":', id="half-body"),
    ],
)
async def test_stalled_peer_loses_its_stream_at_the_read_deadline(
    p2pd_path: str, partial: bytes
) -> None:
    with anyio.fail_after(TEST_DEADLINE):
        async with arena(p2pd_path) as a:
            stream = await a.open()
            async with stream:
                if partial:
                    await stream.send(partial)
                answer = await read_answer(stream, timeout=READ_TIMEOUT + 2.0)
            assert answer.codes in (["timeout"], []), answer
            assert READ_TIMEOUT * 0.8 <= answer.elapsed < READ_TIMEOUT + 1.0, answer
            await a.honest_job()


async def test_stalled_streams_from_one_peer_are_cut_and_honest_jobs_still_run(
    p2pd_path: str,
) -> None:
    count = 200
    with anyio.fail_after(TEST_DEADLINE):
        async with arena(p2pd_path) as a:
            await a.honest_job("warm up")
            before = rss_bytes()
            answers: list[Answer] = []
            opened = 0
            all_open = anyio.Event()

            async def attack(i: int) -> None:
                nonlocal opened
                stream = await a.open()
                async with stream:
                    if i % 2:  # half of them start a request and never finish it
                        await stream.send((500).to_bytes(4, "big") + b'{"type":"job_request"')
                    opened += 1
                    if opened == count:
                        all_open.set()
                    answers.append(await read_answer(stream, timeout=READ_TIMEOUT + 4.0))

            started = anyio.current_time()
            honest_during: list[float] = []
            async with anyio.create_task_group() as tg:
                for i in range(count):
                    tg.start_soon(attack, i)
                await all_open.wait()
                t0 = anyio.current_time()
                await a.honest_job("during the flood")
                honest_during.append(anyio.current_time() - t0)
            total = anyio.current_time() - started

            assert len(answers) == count
            # Under the hard caps nothing is reset unread: each stream that never completes
            # its request is answered ``timeout`` at the read deadline...
            assert all(x.codes == ["timeout"] for x in answers), [x.codes for x in answers]
            assert a.host.admission.reset[ids.JOB] == 0
            assert a.host.admission.timeout[ids.JOB] == count
            # ...and nothing hangs.
            assert total < READ_TIMEOUT * 3 + 5.0
            assert honest_during[0] < READ_TIMEOUT
            growth = rss_bytes() - before
            assert growth < 50 * 1024 * 1024, f"RSS grew by {growth / 2**20:.1f} MiB"
            await a.honest_job("after the flood")
            assert a.host.active_jobs == 0
