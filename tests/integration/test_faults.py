"""Faults a user meets in production (issue 11), each against real p2pd daemons on loopback.

A crash-looping daemon, a stdout nobody reads, a host daemon restart seen by a long-lived
client, a port already taken, impossible identity paths, signals during start-up, an
oversized result, and the ephemeral identity key after SIGKILL.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest

from fabstir_sidecar import (
    DaemonStartError,
    DiscoveryManager,
    EchoBackend,
    FabstirClient,
    FabstirError,
    HostConfig,
    HostService,
    NodeState,
    RetryConfig,
)
from fabstir_sidecar.backend import Completion
from fabstir_sidecar.daemon.runtime_dir import PREFIX, sweep_stale
from fabstir_sidecar.daemon.supervisor import SpawnedDaemon
from fabstir_sidecar.testing.netnode import process_gone
from fabstir_sidecar.wire.messages import JobRequest
from tests.integration import cli_helpers
from tests.integration.cli_helpers import Running
from tests.integration.helpers import child_pids, eventually, free_port, make_node, pid_gone

pytestmark = pytest.mark.integration

START_TIMEOUT = 20.0
F_SETPIPE_SZ = 1031  # fcntl.F_SETPIPE_SZ (Linux), missing from older Pythons' fcntl


def cli_env(p2pd_path: str, **extra: str) -> dict[str, str]:
    return cli_helpers.cli_env(
        p2pd_path,
        P2P_ENABLE_DHT="false",
        FABSTIR_LOG_LEVEL="warning",
        PYTHONUNBUFFERED="1",
        **extra,
    )


def stop(running: Running) -> None:
    if running.proc.poll() is None:
        running.proc.kill()
        running.proc.wait(10)
    running.stderr.drain()


def daemon_pid(node: DiscoveryManager) -> int:
    daemon = node._daemon
    assert isinstance(daemon, SpawnedDaemon) and daemon.pid is not None
    return daemon.pid


def p2pd_child(
    pid: int, *, not_in: frozenset[int] | set[int] = frozenset(), timeout: float = 10.0
) -> int:
    """The p2pd child of process ``pid`` (waiting for one that is not in ``not_in``)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = child_pids(pid) - not_in
        if found:
            return found.pop()
        time.sleep(0.02)
    raise AssertionError(f"process {pid} has no new p2pd child")


# ----------------------------------------------------------- 1. crash-looping daemon


@pytest.mark.anyio
async def test_node_that_gave_up_on_its_daemon_reports_it(p2pd_path: str) -> None:
    async with make_node(p2pd_path) as node:
        for _ in range(6):  # 5 restarts, then the sixth death is final
            pid = daemon_pid(node)
            os.kill(pid, signal.SIGKILL)
            await eventually(
                lambda pid=pid: (
                    node.daemon_failure is not None  # type: ignore[misc]
                    or (node.is_running() and daemon_pid(node) != pid)
                ),
                timeout=15,
            )
        await eventually(lambda: node.daemon_failure is not None, timeout=15)
        assert not node.is_running()
        assert node.state is NodeState.FAILED
        assert "gave up after 5 restarts" in (node.daemon_failure or "")
        with anyio.fail_after(1):
            assert await node.wait_daemon_failure() == node.daemon_failure


def test_cli_exits_non_zero_when_the_daemon_keeps_dying(p2pd_path: str) -> None:
    running = Running.launch(cli_env(p2pd_path), "host", "--model", "m1", "--json", "--no-dht")
    try:
        running.stdout.wait_for(lambda line: '"ready"' in line, START_TIMEOUT)
        seen: set[int] = set()
        for _ in range(6):
            if running.proc.poll() is not None:
                break
            try:
                pid = p2pd_child(running.proc.pid, not_in=seen)
            except AssertionError:
                break  # gave up: no new daemon
            seen.add(pid)
            time.sleep(1.0)  # restarted and ready again (a restart takes about 0.3 s)
            os.kill(pid, signal.SIGKILL)
        code = running.proc.wait(15)
        errors = running.stderr.drain()
    finally:
        stop(running)
    assert code == 1, errors
    assert any("p2pd keeps dying" in line for line in errors), errors
    assert errors[-1].startswith("error: "), errors
    assert not any("Traceback" in line for line in errors), errors


# ------------------------------------------------------ 2. stdout nobody reads


def spawn_json_host(p2pd_path: str) -> subprocess.Popen[str]:
    """``fabstir-sidecar host --json`` (no DHT), all three standard streams piped."""
    return subprocess.Popen(
        [cli_helpers.cli_path(), "host", "--model", "m1", "--json", "--no-dht"],
        env=cli_env(p2pd_path),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.fixture
def json_host(p2pd_path: str) -> Iterator[tuple[subprocess.Popen[str], dict[str, Any]]]:
    """A ``host --json`` whose stdout pipe holds 4 KiB and is read up to the ready line."""
    proc = spawn_json_host(p2pd_path)
    assert proc.stdout is not None and proc.stderr is not None
    fcntl.fcntl(proc.stdout.fileno(), F_SETPIPE_SZ, 4096)
    errors = cli_helpers.Lines(proc.stderr)
    try:
        ready = json.loads(proc.stdout.readline())
        proc.errors = errors  # type: ignore[attr-defined]
        yield proc, ready
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)
        errors.drain()


async def run_jobs(addr: str, count: int, p2pd_path: str) -> int:
    """Run ``count`` echo jobs on the host at ``addr``; each must answer within 5 s."""
    done = 0
    async with make_node(p2pd_path, listen=[]) as node:
        client = FabstirClient(node, retry=RetryConfig(attempts=1))
        for i in range(count):
            with anyio.fail_after(5):
                result = await client.run_job(addr, "m1", f"job number {i} " + "x" * 100)
            assert result.content.startswith("echo:")
            done += 1
        with anyio.fail_after(5):
            await client.get_status(addr)
    return done


@pytest.mark.anyio
async def test_host_keeps_serving_when_nobody_reads_its_stdout(
    p2pd_path: str, json_host: tuple[subprocess.Popen[str], dict[str, Any]]
) -> None:
    proc, ready = json_host
    # 4 KiB of pipe hold about 25 job events: the rest must be dropped, never block.
    assert await run_jobs(ready["addrs"][0], 150, p2pd_path) == 150
    assert proc.poll() is None


@pytest.mark.anyio
async def test_host_keeps_serving_quietly_when_its_stdout_is_closed(
    p2pd_path: str, json_host: tuple[subprocess.Popen[str], dict[str, Any]]
) -> None:
    proc, ready = json_host
    assert proc.stdout is not None
    proc.stdout.close()
    assert await run_jobs(ready["addrs"][0], 20, p2pd_path) == 20
    assert proc.poll() is None
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(15) == 0
    errors: list[str] = proc.errors.drain()  # type: ignore[attr-defined]
    assert not any("Traceback" in line for line in errors), errors
    assert len(errors) <= 2, errors


# ---------------------------------------------- 3. client after a host daemon restart


@pytest.mark.anyio
async def test_client_reconnects_within_a_second_of_the_host_daemon_restart(
    p2pd_path: str, tmp_path: Path
) -> None:
    port = free_port()
    host_node = make_node(
        p2pd_path, listen=[f"/ip4/127.0.0.1/tcp/{port}"], identity_file=tmp_path / "host.key"
    )
    service = HostService(host_node, HostConfig(models=("m1",)), EchoBackend())
    host_node.on_start(service.start)
    async with host_node, make_node(p2pd_path, listen=[]) as client_node:
        addr = (await host_node.get_addrs())[0]
        client = FabstirClient(client_node, retry=RetryConfig(attempts=1))
        await client.get_status(addr)

        async def restart_and_measure() -> tuple[float, list[str]]:
            """SIGKILL the host's p2pd; seconds from its being back to the client's first
            success, and the failures seen meanwhile."""
            old = daemon_pid(host_node)
            back: list[float] = []

            async def watch_host() -> None:
                await eventually(lambda: host_node.is_running() and daemon_pid(host_node) != old)
                back.append(time.monotonic())

            ok_at: float | None = None
            failures: list[str] = []
            with anyio.fail_after(20):
                async with anyio.create_task_group() as tg:
                    tg.start_soon(watch_host)
                    os.kill(old, signal.SIGKILL)
                    # A request in flight at the instant of the death can still make the
                    # client's p2pd redial and record a backoff: retries start once it is gone.
                    await eventually(lambda: process_gone(old))
                    while ok_at is None:
                        try:
                            with anyio.fail_after(3):
                                await client.get_status(addr)
                            if back:
                                ok_at = time.monotonic()
                        except (FabstirError, TimeoutError) as exc:
                            failures.append(str(exc)[-80:])
                        await anyio.sleep(0.05)
            assert back
            return ok_at - back[0], failures

        # A restart that races with a redial of the client's own p2pd can still cost a dial
        # backoff (documented in docs/cli.md); most restarts must not: up to 3 tries.
        seen = []
        for _ in range(3):
            delay, failures = await restart_and_measure()
            seen.append(f"{delay:.2f}s {failures[-2:]}")
            if delay < 1.0:
                break
        assert delay < 1.0, f"no reconnect within 1 s of the host being back: {seen}"


# ------------------------------------------------------------- 4. a port in use


@pytest.mark.anyio
async def test_second_node_on_a_port_in_use_refuses_to_start(p2pd_path: str) -> None:
    port = free_port()
    listen = [f"/ip4/127.0.0.1/tcp/{port}"]
    async with make_node(p2pd_path, listen=listen) as first:
        second = make_node(p2pd_path, listen=listen)
        with pytest.raises(DaemonStartError) as caught:
            async with second:
                pass
        assert "port already in use" in caught.value.reason
        assert str(port) in caught.value.reason
        assert first.is_running()


# ------------------------------------------------------ 5. impossible identity paths


def impossible_paths(tmp_path: Path) -> list[Path]:
    a_file = tmp_path / "a-file"
    a_file.write_text("not a directory")
    return [a_file / "key", Path("/proc/fabstir-no-such-dir/key")]


@pytest.mark.parametrize("how", ["--identity", "P2P_IDENTITY_FILE", "identity FILE"])
def test_impossible_identity_path_is_one_line_exit_2(
    p2pd_path: str, tmp_path: Path, how: str
) -> None:
    for path in impossible_paths(tmp_path):
        env = cli_env(p2pd_path)
        if how == "--identity":
            args = ["node", "--identity", str(path)]
        elif how == "P2P_IDENTITY_FILE":
            env["P2P_IDENTITY_FILE"] = str(path)
            args = ["node"]
        else:
            args = ["identity", str(path)]
        done = cli_helpers.run_cli(env, *args, timeout=30)
        lines = done.stderr.splitlines()
        assert done.returncode == 2, done.stderr
        assert len(lines) == 1 and lines[0].startswith("error: "), done.stderr
        assert str(path) in lines[0], done.stderr


# ------------------------------------------------------ 6. signals during start-up


def catches_sigterm(pid: int) -> bool:
    """True once ``pid`` has a SIGTERM handler (Python installs none by default)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    caught = next(line for line in status.splitlines() if line.startswith("SigCgt:"))
    return bool(int(caught.split()[1], 16) & (1 << (signal.SIGTERM - 1)))


def importing(pid: int) -> bool:
    """True once ``pid`` is importing the package (mmh3, loaded early on, is mapped)."""
    try:
        return "/mmh3." in Path(f"/proc/{pid}/maps").read_text()
    except OSError:
        return False


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
@pytest.mark.parametrize("when", ["handlers installed", "importing", 1.0])
def test_signal_during_start_up_is_a_clean_stop(
    p2pd_path: str, signum: int, when: str | float
) -> None:
    """As soon as the entry point installed its handlers, while the package is being
    imported (about 0.5 s), or ``when`` seconds after the spawn (the node starting). A
    signal before the interpreter ran the entry point (its own start-up, 60-170 ms here)
    still gets Python's default handling."""
    proc = spawn_json_host(p2pd_path)
    if isinstance(when, float):
        time.sleep(when)
    else:
        ready = catches_sigterm if when == "handlers installed" else importing
        deadline = time.monotonic() + 10
        while not ready(proc.pid) and time.monotonic() < deadline:
            time.sleep(0.001)
    proc.send_signal(signum)
    try:
        _, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert "Traceback" not in err, err
    assert proc.returncode == 0, (proc.returncode, err)


# ------------------------------------------------------------- 7. the smaller ones


class HugeBackend(EchoBackend):
    async def complete(self, request: JobRequest) -> Completion:
        return Completion(text="x" * (2 << 20), tokens_used=1, finish_reason="stop")


@pytest.mark.anyio
async def test_oversized_result_logs_one_line_per_request(
    p2pd_path: str, caplog: pytest.LogCaptureFixture
) -> None:
    host_node = make_node(p2pd_path)
    service = HostService(host_node, HostConfig(models=("m1",)), HugeBackend())
    host_node.on_start(service.start)
    async with host_node, make_node(p2pd_path, listen=[]) as client_node:
        addr = (await host_node.get_addrs())[0]
        client = FabstirClient(client_node, retry=RetryConfig(attempts=1))
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="fabstir_sidecar"):
            for _ in range(2):
                with pytest.raises(FabstirError):
                    await client.run_job(addr, "m1", "hi")
            await anyio.sleep(0.2)
    failures = [r for r in caplog.records if r.name == "fabstir_sidecar.rpc.server"]
    assert len(failures) == 2, [r.getMessage() for r in failures]
    assert not any(r.exc_info for r in failures)
    assert all("too large" in str(r.__dict__.get("error", "")) for r in failures)


def runtime_dirs_of(pid: int) -> list[Path]:
    bases = {Path(tempfile.gettempdir()), Path("/tmp")}
    if os.environ.get("XDG_RUNTIME_DIR"):
        bases.add(Path(os.environ["XDG_RUNTIME_DIR"]))
    return [d for base in bases for d in base.glob(f"{PREFIX}{pid}-*")]


def test_ephemeral_identity_key_never_outlives_a_sigkill(p2pd_path: str) -> None:
    running = Running.launch(cli_env(p2pd_path), "node", "--json", "--no-dht")
    try:
        running.stdout.wait_for(lambda line: '"ready"' in line, START_TIMEOUT)
        dirs = runtime_dirs_of(running.proc.pid)
        assert dirs
        while_running = [p for d in dirs for p in d.iterdir() if p.suffix == ".key"]
        daemon = p2pd_child(running.proc.pid)
        running.proc.kill()
        running.proc.wait(10)
        deadline = time.monotonic() + 5
        while not pid_gone(daemon) and time.monotonic() < deadline:
            time.sleep(0.02)
        left = [p for d in dirs if d.exists() for p in d.iterdir() if p.suffix == ".key"]
    finally:
        stop(running)
        sweep_stale()
    assert not while_running, while_running
    assert not left, left
