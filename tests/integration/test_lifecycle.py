"""Daemon lifecycle with real p2pd: attach mode, crash + restart, cleanup on every exit path."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

import anyio
import pytest

from fabstir_sidecar import (
    DaemonUnavailableError,
    DiscoveryManager,
    FabstirError,
    NodeState,
    ProtocolNotSupportedError,
)
from fabstir_sidecar.daemon.runtime_dir import PREFIX, RuntimeDir
from fabstir_sidecar.daemon.supervisor import SpawnedDaemon
from tests.integration.helpers import (
    Inbox,
    child_pids,
    eventually,
    make_node,
    pid_gone,
    raw_daemon,
)

pytestmark = [pytest.mark.integration, pytest.mark.anyio]

TEST_DEADLINE = 30.0


def spawned(node: DiscoveryManager) -> SpawnedDaemon:
    daemon = node._daemon
    assert isinstance(daemon, SpawnedDaemon)
    return daemon


def daemon_pid(node: DiscoveryManager) -> int:
    pid = spawned(node).pid
    assert pid is not None
    return pid


def runtime_dir_of(node: DiscoveryManager) -> Path:
    return spawned(node).spec.control_socket.parent


def our_runtime_dirs() -> set[Path]:
    bases = {Path(tempfile.gettempdir()), Path("/tmp")}
    if os.environ.get("XDG_RUNTIME_DIR"):
        bases.add(Path(os.environ["XDG_RUNTIME_DIR"]))
    return {p for base in bases for p in base.glob(f"{PREFIX}{os.getpid()}-*")}


def child_p2pd_pids() -> set[int]:
    """p2pd processes whose parent is this test process."""
    found = set()
    for pid in child_pids(os.getpid()):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"p2pd" in cmdline[0]:
            found.add(pid)
    return found


# -------------------------------------------------------------------------- attach


async def test_attach_to_a_running_daemon(p2pd_path: str) -> None:
    with anyio.fail_after(TEST_DEADLINE):
        async with raw_daemon(p2pd_path) as (proc, raw, sock), make_node(p2pd_path) as sender:
            raw_id, raw_addrs = await raw.identify()
            raw_pid = proc.pid
            assert raw_pid is not None
            target = f"{raw_addrs[0]}/p2p/{raw_id}"

            attached = make_node(p2pd_path, control_addr=f"/unix{sock}")
            async with attached:
                assert attached.peer_id == raw_id
                assert attached.is_running()
                assert await attached.get_addrs() == [f"{a}/p2p/{raw_id}" for a in raw_addrs]
                inbox = Inbox()
                attached.on_message(inbox)
                await sender.send_message(target, {"to": "attached"})
                assert await inbox.wait_for(1) == [(sender.peer_id, {"to": "attached"})]
                # The attached node's handler socket is private to it, not next to p2pd's.
                handlers = attached._handlers
                assert handlers is not None
                assert handlers.socket_path.parent != sock.parent

            # The daemon we started ourselves is still there and still answers.
            assert proc.running
            assert not pid_gone(raw_pid)
            assert (await raw.identify())[0] == raw_id
            assert sock.exists()
            # ... but no longer handles the message protocol. The sender's daemon may still
            # believe it does until the identify push announcing the removal arrives (until
            # then multistream is negotiated lazily and a one-way send cannot see the
            # refusal), so ask until the refusal is reported.
            with anyio.fail_after(5):
                while True:
                    try:
                        await sender.send_message(raw_id, {"to": "nobody"})
                    except ProtocolNotSupportedError:
                        break
                    await anyio.sleep(0.05)
            assert len(inbox.items) == 1
        assert pid_gone(raw_pid)


# --------------------------------------------------------------------------- crash


async def test_daemon_crash_is_restarted_with_same_identity_and_port(p2pd_path: str) -> None:
    with anyio.fail_after(TEST_DEADLINE):
        async with make_node(p2pd_path) as victim, make_node(p2pd_path) as peer:
            victim_addrs = await victim.get_addrs()
            await peer.connect_to_peer(victim_addrs[0])
            inbox = Inbox()
            victim.on_message(inbox)
            await peer.send_message(victim.peer_id, {"n": "before"})
            await inbox.wait_for(1)
            peer_id = victim.peer_id
            old_pid = daemon_pid(victim)

            os.kill(old_pid, signal.SIGKILL)
            started = time.monotonic()
            with pytest.raises(DaemonUnavailableError):
                await victim.get_addrs()
            with pytest.raises(DaemonUnavailableError):
                await victim.send_message(peer.peer_id, {"n": "while down"})
            with pytest.raises(DaemonUnavailableError):
                await victim.get_connected_peers()
            assert time.monotonic() - started < 0.5

            await eventually(lambda: victim.is_running() and victim.restarts == 1, timeout=10)
            assert victim.restarts == 1
            new_pid = daemon_pid(victim)
            assert new_pid != old_pid
            assert pid_gone(old_pid)
            assert victim.peer_id == peer_id
            assert (await victim.control.identify())[0] == peer_id
            # The restart pinned the TCP port: peers that knew the address still find it.
            assert await victim.get_addrs() == victim_addrs

            # The peer that was connected before reaches it again (handlers re-registered).
            with anyio.fail_after(10):
                while True:
                    try:
                        await peer.send_message(peer_id, {"n": "after"})
                        break
                    except FabstirError:  # its old connection may still be closing
                        await anyio.sleep(0.1)
            got = await inbox.wait_for(2)
            assert got[-1] == (peer.peer_id, {"n": "after"})
            assert victim.state is NodeState.RUNNING
        assert pid_gone(new_pid)


async def test_restart_disabled_stays_unavailable(p2pd_path: str) -> None:
    with anyio.fail_after(TEST_DEADLINE):
        async with make_node(p2pd_path, restart_daemon=False) as node:
            pid = daemon_pid(node)
            runtime = runtime_dir_of(node)
            os.kill(pid, signal.SIGKILL)
            # Until the supervisor notices, the dead socket itself fails fast.
            message = ""
            with anyio.fail_after(5):
                while "exited" not in message:
                    with pytest.raises(DaemonUnavailableError) as info:
                        await node.get_addrs()
                    message = str(info.value)
                    await anyio.sleep(0.01)
            assert f"pid {pid}" in message
            assert "restart is disabled" in message
            assert not node.is_running()
            assert node.restarts == 0
            assert daemon_pid(node) == pid
            with pytest.raises(DaemonUnavailableError, match="exited"):
                await node.send_message(node.peer_id, {"x": 1})
            with pytest.raises(DaemonUnavailableError, match="exited"):
                await node.get_connected_peers()
        assert node.state is NodeState.CLOSED
        assert not runtime.exists()


# ------------------------------------------------------------------------- cleanup


async def test_cleanup_after_normal_exit(p2pd_path: str) -> None:
    with anyio.fail_after(TEST_DEADLINE):
        async with make_node(p2pd_path) as node:
            pid = daemon_pid(node)
            runtime = runtime_dir_of(node)
            assert runtime.is_dir()
        assert pid_gone(pid)
        assert not runtime.exists()
        assert node.state is NodeState.CLOSED


async def test_cleanup_after_exception_in_block(p2pd_path: str) -> None:
    class Boom(Exception):
        pass

    with anyio.fail_after(TEST_DEADLINE):
        with pytest.raises(Boom):
            async with make_node(p2pd_path) as node:
                pid = daemon_pid(node)
                runtime = runtime_dir_of(node)
                raise Boom
        assert pid_gone(pid)
        assert not runtime.exists()
        assert node.state is NodeState.CLOSED


async def test_cleanup_after_cancellation_while_running(p2pd_path: str) -> None:
    with anyio.fail_after(TEST_DEADLINE):
        seen: dict[str, Any] = {}
        with anyio.CancelScope() as scope:
            async with make_node(p2pd_path) as node:
                seen["pid"] = daemon_pid(node)
                seen["runtime"] = runtime_dir_of(node)
                scope.cancel()
                await anyio.sleep(30)
        assert scope.cancelled_caught
        assert pid_gone(seen["pid"])
        assert not seen["runtime"].exists()
        assert node.state is NodeState.CLOSED


async def test_cleanup_when_the_enclosing_task_is_cancelled(p2pd_path: str) -> None:
    seen: dict[str, Any] = {}
    ready = anyio.Event()

    async def serve() -> None:
        node = make_node(p2pd_path)
        seen["node"] = node
        await node.create_node()
        try:
            seen["pid"] = daemon_pid(node)
            seen["runtime"] = runtime_dir_of(node)
            ready.set()
            await anyio.sleep_forever()
        finally:
            await node.stop()

    with anyio.fail_after(TEST_DEADLINE):
        async with anyio.create_task_group() as tg:
            tg.start_soon(serve)
            await ready.wait()
            tg.cancel_scope.cancel()
        assert pid_gone(seen["pid"])
        assert not seen["runtime"].exists()
        assert seen["node"].state is NodeState.CLOSED


@pytest.mark.parametrize("delay", [0.0, 0.01, 0.05, 0.15])
async def test_cancelled_during_create_node_leaves_nothing(p2pd_path: str, delay: float) -> None:
    before_dirs = our_runtime_dirs()
    before_pids = child_p2pd_pids()
    node = make_node(p2pd_path)
    with anyio.fail_after(TEST_DEADLINE):
        # create_node() opens the node's task group: stop() belongs in the same scope.
        with anyio.move_on_after(delay):
            try:
                await node.create_node()
                await anyio.sleep_forever()
            finally:
                await node.stop()
        assert node.state is NodeState.CLOSED
        await eventually(lambda: not child_p2pd_pids() - before_pids, timeout=3)
    assert our_runtime_dirs() - before_dirs == set()


def test_python_killed_daemon_follows_and_dir_is_swept(p2pd_path: str) -> None:
    script = textwrap.dedent(
        """
        import sys
        import anyio
        from fabstir_sidecar import DiscoveryManager

        async def main():
            node = DiscoveryManager(
                p2pd_path=sys.argv[1], listen=["/ip4/127.0.0.1/tcp/0"], bootstrap=[],
                enable_mdns=False, enable_dht=False,
            )
            async with node:
                daemon = node._daemon
                print(daemon.pid, daemon.spec.control_socket.parent, flush=True)
                await anyio.sleep(60)

        anyio.run(main)
        """
    )
    child = subprocess.Popen(
        [sys.executable, "-c", script, p2pd_path],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
    )
    p2pd_pid: int | None = None
    try:
        line = _read_line(child, timeout=20.0)
        pid_text, runtime_text = line.split(" ", 1)
        p2pd_pid, runtime = int(pid_text), Path(runtime_text)
        assert not pid_gone(p2pd_pid)
        assert runtime.is_dir()
        assert runtime.name.startswith(f"{PREFIX}{child.pid}-")

        child.send_signal(signal.SIGKILL)
        child.wait(timeout=5)
        deadline = time.monotonic() + 3.0
        while not pid_gone(p2pd_pid) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert pid_gone(p2pd_pid), "p2pd outlived its SIGKILLed Python parent"

        # A SIGKILLed Python cannot clean up; the next RuntimeDir sweeps its directory.
        assert runtime.exists()
        fresh = RuntimeDir()
        try:
            assert not runtime.exists()
            assert fresh.path.exists()
        finally:
            fresh.close()
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(timeout=5)
        if p2pd_pid is not None and not pid_gone(p2pd_pid):
            os.kill(p2pd_pid, signal.SIGKILL)
        for stream in (child.stdout, child.stderr):
            if stream is not None:
                stream.close()


def _read_line(proc: subprocess.Popen[str], timeout: float) -> str:
    """The child's first stdout line, or a failure with its stderr, within ``timeout``."""
    import selectors

    assert proc.stdout is not None
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ)
        if not sel.select(timeout):
            proc.kill()
            pytest.fail(f"child printed nothing within {timeout}s")
    line = proc.stdout.readline().strip()
    if not line:
        proc.kill()
        _, err = proc.communicate(timeout=5)
        pytest.fail(f"child exited early: {err}")
    return line


# --------------------------------------------------------------------- permissions


async def test_sockets_live_in_a_private_directory(p2pd_path: str) -> None:
    with anyio.fail_after(TEST_DEADLINE):
        async with make_node(p2pd_path) as node:
            handlers = node._handlers
            assert handlers is not None
            control_socket = spawned(node).spec.control_socket
            runtime = handlers.socket_path.parent
            assert control_socket.parent == runtime
            assert stat.S_ISSOCK(handlers.socket_path.stat().st_mode)
            assert stat.S_ISSOCK(control_socket.stat().st_mode)
            mode = runtime.stat()
            assert stat.S_IMODE(mode.st_mode) == 0o700
            assert mode.st_uid == os.getuid()
            assert runtime.name.startswith(f"{PREFIX}{os.getpid()}-")
        assert not runtime.exists()
