"""The plugin seen from a user's test run (pytester, in subprocesses): cleanup after a
failing test, after a timed-out test, under xdist; logs in reports; leak check; options."""

from __future__ import annotations

import os
import shutil
import time
import uuid
from pathlib import Path

import pytest

pytest_plugins = ["pytester"]
pytestmark = pytest.mark.integration

RUN_VAR = "FABSTIR_PLUGIN_TEST_RUN"  # inherited by every process of the inner run


@pytest.fixture
def run_tag(monkeypatch: pytest.MonkeyPatch, p2pd_binary: Path) -> str:
    tag = uuid.uuid4().hex
    monkeypatch.setenv(RUN_VAR, tag)
    # pytester gives the inner run its own HOME, so the installed p2pd is not found there
    monkeypatch.setenv("P2PD_BIN", str(p2pd_binary))
    return tag


def survivors(tag: str, wait: float = 5.0) -> set[int]:
    """p2pd processes of the inner run still alive after ``wait`` seconds."""
    deadline = time.monotonic() + wait
    while True:
        found = _tagged_by_run(tag)
        if not found or time.monotonic() > deadline:
            return found
        time.sleep(0.05)


def _tagged_by_run(tag: str) -> set[int]:
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if (entry / "comm").read_text().strip() != "p2pd":
                continue
            environ = (entry / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if f"{RUN_VAR}={tag}".encode() in environ:
            found.add(int(entry.name))
    return found


NETWORK_TEST = """
import anyio, pytest
from fabstir_sidecar import HostCriteria
from fabstir_sidecar.testing import HostSpec

@pytest.fixture
def anyio_backend():
    return "asyncio"

async def test_fails(fabstir_network):
    net = await fabstir_network(hosts=[HostSpec(models=["m"]), HostSpec(models=["m"])])
    client = await net.client()
    await client.run_job(net.hosts[0].peer_id, "m", "hi")
    await net.hosts[1].pause()
    assert False, "boom"
"""


def test_failing_test_is_cleaned_up_and_gets_the_logs(
    pytester: pytest.Pytester, run_tag: str
) -> None:
    pytester.makepyfile(test_user=NETWORK_TEST)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(failed=1)
    # The section, then each daemon's lines in it (daemons start concurrently: any order).
    section = "*fabstir node and p2pd logs (call)*"
    for daemon_line in ("*bootstrap p2pd[[]*] *p2pd ready*", "*host1 p2pd[[]*]*"):
        result.stdout.fnmatch_lines([section, daemon_line])
    result.stdout.no_fnmatch_line("*survived*")
    assert survivors(run_tag) == set()


def test_timed_out_test_is_cleaned_up(pytester: pytest.Pytester, run_tag: str) -> None:
    """A test awaiting something that never comes: pytest-timeout (signal method) fails it,
    its networks are stopped at once, and the next test runs."""
    pytester.makepyfile(
        test_user="""
import anyio, pytest
from fabstir_sidecar.testing import HostSpec

@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request):
    return request.param

@pytest.mark.timeout(3)
async def test_hangs(fabstir_network):
    await fabstir_network(hosts=[HostSpec(models=["m"])] * 2)
    await anyio.Event().wait()

def test_after_it(fabstir_network_sync):
    net = fabstir_network_sync(hosts=[HostSpec(models=["m"])])
    assert net.client().run_job(net.hosts[0].peer_id, "m", "x").content == "echo: x"
"""
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(failed=2, passed=1)
    result.stdout.fnmatch_lines(["*Timeout (>3.0s) from pytest-timeout: fabstir cancelled*"])
    result.stdout.no_fnmatch_line("*survived*")
    assert survivors(run_tag) == set()


def test_thread_timeout_kills_the_process_and_its_daemons_die_too(
    pytester: pytest.Pytester, run_tag: str
) -> None:
    """pytest-timeout's thread method ends pytest with os._exit: no teardown at all. The
    daemons still die (the library's parent-death signal)."""
    pytester.makepyfile(
        test_user="""
import anyio, pytest
from fabstir_sidecar.testing import HostSpec

@pytest.fixture
def anyio_backend():
    return "asyncio"

@pytest.mark.timeout(3, method="thread")
async def test_hangs(fabstir_network):
    await fabstir_network(hosts=[HostSpec(models=["m"])])
    await anyio.sleep(60)
"""
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    assert result.ret != 0
    assert survivors(run_tag) == set()


def test_two_xdist_workers_run_networks_side_by_side(
    pytester: pytest.Pytester, run_tag: str
) -> None:
    pytester.makepyfile(
        test_user="""
import pytest
from fabstir_sidecar import HostCriteria
from fabstir_sidecar.testing import HostSpec

@pytest.fixture
def anyio_backend():
    return "asyncio"

@pytest.mark.parametrize("n", range(4))
async def test_network(fabstir_network, n):
    net = await fabstir_network(hosts=[HostSpec(location="DE"), HostSpec()])
    client = await net.client(connect=False)
    found = await client.node.find_host(HostCriteria(location="DE"))
    assert found.host.peer_id == net.hosts[0].peer_id
    await net.hosts[0].kill()
"""
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-n", "2")
    result.assert_outcomes(passed=4)
    result.stdout.fnmatch_lines(["*2 workers*"])
    assert survivors(run_tag) == set()


def test_leak_check_fails_the_session_and_kills_the_leak(
    pytester: pytest.Pytester, run_tag: str, p2pd_binary: Path
) -> None:
    pytester.makepyfile(
        test_user=f"""
import subprocess, tempfile, os, time
def test_leaks_a_daemon():
    d = tempfile.mkdtemp()
    open("leak_dir", "w").write(d)  # for the outer test to remove afterwards
    subprocess.Popen([{str(p2pd_binary)!r}, "-listen", f"/unix{{d}}/s.sock",
                      "-bootstrapPeers", "", "-hostAddrs", "/ip4/127.0.0.1/tcp/0"],
                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(500):  # until it runs: a child still between fork and exec is no p2pd yet
        if os.path.exists(f"{{d}}/s.sock"):
            break
        time.sleep(0.01)
"""
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(["*p2pd processes started by this test session survived it*"])
    assert survivors(run_tag) == set()  # and it was killed
    shutil.rmtree((pytester.path / "leak_dir").read_text(), ignore_errors=True)  # its socket


def test_keep_logs_writes_one_file_per_test(pytester: pytest.Pytester, run_tag: str) -> None:
    pytester.makepyfile(
        test_user="""
def test_one(fabstir_network_sync):
    fabstir_network_sync()
"""
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--fabstir-keep-logs=logs")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["fabstir: test logs kept in */logs"])
    (log_file,) = (pytester.path / "logs").iterdir()
    assert "bootstrap p2pd[" in log_file.read_text()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--fabstir-daemon", "docker"], "*--fabstir-daemon docker: *loopback*"),
        (["--fabstir-p2pd", "/nonexistent/p2pd"], "*--fabstir-p2pd /nonexistent/p2pd: not an*"),
    ],
)
def test_bad_options_are_usage_errors(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, args: list[str], message: str
) -> None:
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
    pytester.makepyfile(test_user="def test_nothing(): pass\n")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", *args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([message])


def test_explicit_p2pd_is_used(pytester: pytest.Pytester, p2pd_binary: Path) -> None:
    pytester.makepyfile(
        test_user=f"""
def test_binary(p2pd_binary):
    assert str(p2pd_binary) == {str(p2pd_binary)!r}
"""
    )
    result = pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", "--fabstir-p2pd", str(p2pd_binary)
    )
    result.assert_outcomes(passed=1)


def test_environment_does_not_reach_test_nodes(pytester: pytest.Pytester, run_tag: str) -> None:
    """P2P_* variables of the user's shell must not turn test nodes to the outside."""
    pytester.makepyfile(
        test_user="""
def test_env(fabstir_network_sync):
    net = fabstir_network_sync()
    config = net.network.bootstrap.node.config
    assert all(a.startswith("/ip4/127.0.0.1/") for a in config.listen)
    assert not config.enable_mdns and config.control_addr is None
"""
    )
    env = dict(os.environ, P2P_ENABLE_MDNS="true", P2P_LISTEN_ADDRESSES="/ip4/0.0.0.0/tcp/4001")
    os.environ.update(env)
    try:
        result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    finally:
        os.environ.pop("P2P_LISTEN_ADDRESSES")
        os.environ.pop("P2P_ENABLE_MDNS")
    result.assert_outcomes(passed=1)
