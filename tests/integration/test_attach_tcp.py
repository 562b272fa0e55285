"""Attaching over a TCP control address, as a node beside a p2pd sidecar does.

The node is started before its daemon (it waits for it), receives SDK messages through a TCP
handler listener (what crosses a container boundary in a shared network namespace), and when
the daemon is restarted on the same control address the node re-registers and receives again.
Real p2pd processes on loopback; no container engine needed.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
from collections.abc import AsyncIterator

import anyio
import anyio.abc
import pytest

from fabstir_sidecar import DaemonStartError

from .helpers import Inbox, eventually, free_port, make_node

pytestmark = pytest.mark.integration


@contextlib.asynccontextmanager
async def tcp_daemon(p2pd_path: str, control_port: int) -> AsyncIterator[anyio.abc.Process]:
    """A bare p2pd with its control socket on 127.0.0.1:<control_port>; stopped on exit."""
    prefix = [s, "--pdeathsig", "TERM", "--"] if (s := shutil.which("setpriv")) else []
    argv = [
        *prefix,
        p2pd_path,
        "-listen",
        f"/ip4/127.0.0.1/tcp/{control_port}",
        "-hostAddrs",
        "/ip4/127.0.0.1/tcp/0",
        "-bootstrapPeers",
        "",
    ]
    proc = await anyio.open_process(
        argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        yield proc
    finally:
        with anyio.CancelScope(shield=True):
            if proc.returncode is None:
                proc.terminate()
                with anyio.move_on_after(5):
                    await proc.wait()
                if proc.returncode is None:
                    proc.kill()
                    await proc.wait()


@pytest.mark.anyio
async def test_attach_waits_receives_over_tcp_and_survives_a_daemon_restart(
    p2pd_path: str,
) -> None:
    port = free_port()
    control = f"/ip4/127.0.0.1/tcp/{port}"
    inbox = Inbox()
    attached = make_node(p2pd_path, control_addr=control, daemon_start_timeout=20.0)
    async with anyio.create_task_group() as tg, make_node(p2pd_path) as sender:

        async def daemon_later(*, task_status: anyio.abc.TaskStatus[None]) -> None:
            task_status.started()
            await anyio.sleep(1.0)  # the node is already waiting for it
            async with tcp_daemon(p2pd_path, port):
                await anyio.sleep_forever()

        await tg.start(daemon_later)
        async with attached:
            attached.on_message(inbox)
            addr = next(a for a in await attached.get_addrs() if "/tcp/" in a)
            await sender.send_message(addr, {"n": 1})
            assert (await inbox.wait_for(1))[-1] == (sender.peer_id, {"n": 1})

            tg.cancel_scope.cancel()  # the daemon stops ...
            await eventually(lambda: not attached.is_running(), timeout=15)
            async with tcp_daemon(p2pd_path, port):  # ... and comes back on the same address
                await eventually(lambda: attached.restarts == 1 and attached.is_running(), 15)
                addr = next(a for a in await attached.get_addrs() if "/tcp/" in a)
                await sender.send_message(addr, {"n": 2})
                assert (await inbox.wait_for(2))[-1] == (sender.peer_id, {"n": 2})


@pytest.mark.anyio
async def test_attach_gives_up_after_the_start_timeout(p2pd_path: str) -> None:
    control = f"/ip4/127.0.0.1/tcp/{free_port()}"
    with anyio.fail_after(10):
        with pytest.raises(DaemonStartError, match=r"waited 1s"):
            async with make_node(p2pd_path, control_addr=control, daemon_start_timeout=1.0):
                pass  # pragma: no cover - never reached
