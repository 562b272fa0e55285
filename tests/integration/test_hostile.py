"""A hostile peer (a raw p2pd we drive directly) abuses the message protocol of a node.

The victim must refuse every bad stream, count and log it, keep serving other streams and
stay running; good messages sent afterwards (or meanwhile) arrive with the right sender.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import anyio
import pytest

from fabstir_sidecar import DiscoveryManager, StreamClosedError
from fabstir_sidecar.daemon.control import DaemonControl
from fabstir_sidecar.daemon.stream import DaemonStream
from tests.integration.helpers import Inbox, make_node, raw_daemon

pytestmark = [pytest.mark.integration, pytest.mark.anyio]

PROTOCOL = "/fabstir-llm/1.0.0/message"
TEST_DEADLINE = 30.0
CHUNK = 64 * 1024


@dataclass
class Arena:
    victim: DiscoveryManager
    inbox: Inbox
    hostile: DaemonControl
    hostile_id: str

    async def open(self) -> DaemonStream:
        stream = await self.hostile.open_stream(self.victim.peer_id, [PROTOCOL], timeout=5.0)
        assert stream.protocol == PROTOCOL
        return stream

    async def send_raw(self, data: bytes) -> None:
        """Open a stream, write ``data`` (in chunks), close; a reset by the victim is fine."""
        stream = await self.open()
        try:
            for start in range(0, len(data), CHUNK):
                await stream.send(data[start : start + CHUNK])
        except StreamClosedError:
            pass  # the victim stopped reading once it had seen enough
        finally:
            await stream.aclose()

    async def wait_refused(self, count: int, timeout: float = 10.0) -> None:
        with anyio.fail_after(timeout):
            while True:  # polled: the victim has no event for refusals
                if self.victim.message_stats["refused"] >= count:
                    return
                await anyio.sleep(0.005)

    async def check_good_message(self, tag: str) -> None:
        """A well-formed message from the hostile peer still gets through."""
        before = len(self.inbox.items)
        await self.send_raw(json.dumps({"good": tag}).encode())
        got = await self.inbox.wait_for(before + 1)
        assert got[before] == (self.hostile_id, {"good": tag})


@contextlib.asynccontextmanager
async def arena(p2pd_path: str, **victim_options: Any) -> AsyncIterator[Arena]:
    """A victim node and a raw hostile p2pd connected to it."""
    async with (
        raw_daemon(p2pd_path) as (_, hostile, _),
        make_node(p2pd_path, **victim_options) as victim,
    ):
        inbox = Inbox()
        victim.on_message(inbox)
        victim_addr = (await victim.get_addrs())[0].rsplit("/p2p/", 1)[0]
        await hostile.connect(victim.peer_id, [victim_addr], timeout=5.0)
        hostile_id, _ = await hostile.identify()
        yield Arena(victim, inbox, hostile, hostile_id)
        assert victim.is_running()


def refusal_warnings(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [
        r
        for r in caplog.records
        if r.name == "fabstir_sidecar.protocols.message" and r.levelno == logging.WARNING
    ]


async def test_garbage_streams_are_refused(
    p2pd_path: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="fabstir_sidecar")
    with anyio.fail_after(TEST_DEADLINE):
        async with arena(p2pd_path) as a:
            await a.check_good_message("first")
            bad = [
                ("oversized", b"[" + b"1," * (1024 * 1024) + b"1]"),  # ~2 MiB of bytes
                ("invalid utf-8", b'{"text": "\xff\xfe\xc3\x28"}'),
                ("malformed json", b'{"text": "unterminated'),
                ("trailing garbage", b'{"a": 1} {"b": 2}'),
                ("nan", b'{"x": NaN}'),
                ("empty", b""),
            ]
            for i, (what, data) in enumerate(bad, start=1):
                await a.send_raw(data)
                await a.wait_refused(i)
                assert a.victim.message_stats["refused"] == i, what
                assert a.victim.is_running(), what
                warnings = refusal_warnings(caplog)
                assert len(warnings) == i, what
                assert warnings[-1].peer == a.hostile_id  # type: ignore[attr-defined]

            errors = [r.error for r in refusal_warnings(caplog)]  # type: ignore[attr-defined]
            assert "too large" in errors[0]
            assert "UTF-8" in errors[1]
            assert all("JSON" in e for e in errors[2:]), errors
            assert a.inbox.items == [(a.hostile_id, {"good": "first"})]

            await a.check_good_message("after garbage")
            assert a.victim.message_stats == {"received": 2, "refused": len(bad)}


async def test_random_binary_flood_is_refused(
    p2pd_path: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="fabstir_sidecar")
    with anyio.fail_after(TEST_DEADLINE):
        async with arena(p2pd_path) as a:
            # 2 MiB of arbitrary bytes, then close: refused as too large, not buffered whole.
            await a.send_raw(bytes(range(256)) * (8 * 1024))
            await a.wait_refused(1)
            (warning,) = refusal_warnings(caplog)
            assert "too large" in warning.error  # type: ignore[attr-defined]
            await a.check_good_message("after flood")
            assert a.victim.message_stats == {"received": 1, "refused": 1}


async def test_stalled_stream_is_dropped_without_blocking_others(
    p2pd_path: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="fabstir_sidecar")
    with anyio.fail_after(TEST_DEADLINE):
        async with (
            arena(p2pd_path, connection_timeout=1.0) as a,
            make_node(p2pd_path) as friend,
        ):
            stalled = await a.open()
            try:
                opened = time.monotonic()
                await stalled.send(b'{"half": "a json val')
                # While that stream hangs, other streams are served at once.
                await a.check_good_message("during stall")
                await friend.send_message((await a.victim.get_addrs())[0], {"from": "friend"})
                await a.inbox.wait_for(2)
                assert a.inbox.items[-1] == (friend.peer_id, {"from": "friend"})
                assert time.monotonic() - opened < 1.0
                assert a.victim.message_stats["refused"] == 0

                await a.wait_refused(1, timeout=5.0)
                elapsed = time.monotonic() - opened
                assert 0.9 <= elapsed < 3.0, elapsed
                (warning,) = refusal_warnings(caplog)
                assert "stalled" in warning.getMessage()
                assert warning.peer == a.hostile_id  # type: ignore[attr-defined]
                # The victim closed its end: the hostile side sees the stream end.
                with anyio.fail_after(5):
                    assert await stalled.receive_some() == b""
            finally:
                await stalled.aclose()
            assert a.victim.is_running()
            await a.check_good_message("after stall")
            assert a.victim.message_stats == {"received": 3, "refused": 1}


async def test_fifty_concurrent_streams(p2pd_path: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="fabstir_sidecar")
    count = 50
    with anyio.fail_after(TEST_DEADLINE):
        async with arena(p2pd_path) as a:
            # Open all streams first so they are all in flight on the victim at once.
            streams: list[DaemonStream] = []

            async def open_one() -> None:
                streams.append(await a.open())

            async with anyio.create_task_group() as tg:
                for _ in range(count):
                    tg.start_soon(open_one)
            assert len(streams) == count

            async def finish(i: int, stream: DaemonStream) -> None:
                async with stream:
                    body = {"n": i, "pad": "é" * i} if i % 5 else None
                    data = json.dumps(body).encode() if body is not None else b"{broken"
                    await stream.send(data)

            async with anyio.create_task_group() as tg:
                for i, stream in enumerate(streams):
                    tg.start_soon(finish, i, stream)

            good = [i for i in range(count) if i % 5]
            got = await a.inbox.wait_for(len(good))
            await a.wait_refused(count - len(good))
            assert sorted(m["n"] for _, m in got) == good
            assert {s for s, _ in got} == {a.hostile_id}
            assert all(m["pad"] == "é" * m["n"] for _, m in got)
            assert a.victim.message_stats == {"received": len(good), "refused": count - len(good)}
            assert len(refusal_warnings(caplog)) == count - len(good)
            assert a.victim.is_running()
            await a.check_good_message("after concurrency")
