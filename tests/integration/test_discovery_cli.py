"""The real ``bootstrap``, ``host``, ``find``, ``diagnose`` and ``demo`` commands, as
subprocesses on loopback (no mDNS; the hosts run the DHT in server mode)."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from fabstir_sidecar.daemon.identity import generate_identity
from tests.integration import cli_helpers
from tests.integration.cli_helpers import Running, spawn_cli
from tests.integration.helpers import child_pids, free_port

pytestmark = pytest.mark.integration

START_TIMEOUT = 20.0
CALL_TIMEOUT = 30.0
FIND_TIMEOUT = "10"  # --timeout of one search, seconds

LLAMA = "llama-3.2-1b-instruct"
MISTRAL = "mistral-7b-instruct"
ROW_KEYS = {"peer_id", "addrs", "models", "reputation", "uptime_s", "location", "latency_ms"}


def cli_env(p2pd_path: str) -> dict[str, str]:
    """The shared CLI environment, quiet logs and unbuffered output (the DHT as configured)."""
    return cli_helpers.cli_env(p2pd_path, FABSTIR_LOG_LEVEL="warning", PYTHONUNBUFFERED="1")


def start(p2pd_path: str, *args: str) -> Running:
    """Start a long-running command and wait for its JSON ready line."""
    running = Running.launch(cli_env(p2pd_path), *args)
    try:
        running.ready = json.loads(running.stdout.first(START_TIMEOUT))
    except BaseException:
        stop(running)
        raise
    return running


def stop(running: Running) -> int | None:
    """SIGTERM, wait; SIGKILL only if it does not stop in time. Returns the exit code."""
    proc = running.proc
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
    running.stderr.drain()
    running.stdout.drain()
    return proc.returncode


def run_cli(
    p2pd_path: str, *args: str, timeout: float = CALL_TIMEOUT, **env: str
) -> subprocess.CompletedProcess[str]:
    return cli_helpers.run_cli({**cli_env(p2pd_path), **env}, *args, timeout=timeout)


def help_text(text: str) -> str:
    """typer's help without its box drawing and line wrapping."""
    return " ".join(re.sub("[\u2500-\u257f]", " ", text).split())


def error_lines(done: subprocess.CompletedProcess[str]) -> list[str]:
    return [line for line in done.stderr.splitlines() if line.startswith("error:")]


@dataclass
class CliNet:
    boot: Running
    hosts: list[Running]
    p2pd_path: str

    def find(self, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
        return run_cli(
            self.p2pd_path,
            "find",
            "--bootstrap",
            self.boot.addr,
            "--timeout",
            FIND_TIMEOUT,
            *args,
            **env,
        )


def poll(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout}s: {what}")
        time.sleep(0.2)


@pytest.fixture(scope="module")
def cli_net(p2pd_path: str) -> Iterator[CliNet]:
    started: list[Running] = []
    try:
        boot = start(p2pd_path, "bootstrap", "--json")
        started.append(boot)
        common = ("host", "--json", "--dht-mode", "server", "--bootstrap", boot.addr)
        h1 = start(
            p2pd_path,
            *common,
            *("--model", LLAMA, "--model", MISTRAL, "--reputation", "90", "--location", "us"),
        )
        started.append(h1)
        h2 = start(
            p2pd_path,
            *common,
            *("--model", LLAMA, "--reputation", "50", "--location", "DE", "--max-jobs", "2"),
        )
        started.append(h2)
        net = CliNet(boot, [h1, h2], p2pd_path)

        # The hosts provide their models in the background: wait until a search sees both.
        def both_found() -> bool:
            done = net.find("--all", "--json")
            if done.returncode != 0:
                return False
            return {row["peer_id"] for row in json.loads(done.stdout)} == {h1.peer_id, h2.peer_id}

        poll(both_found, 30, "both hosts found by `find --all`")
        yield net
        # SIGTERM: every long-running command stops cleanly, without a traceback.
        codes = [stop(running) for running in reversed(started)]
        assert codes == [0, 0, 0], codes
        for running in started:
            assert not [line for line in running.stderr.lines if "Traceback" in line]
    finally:
        for running in reversed(started):
            stop(running)  # idempotent: only what is still running


# ----------------------------------------------------------------------------- tests


def test_bootstrap_and_hosts_print_ready_lines(cli_net: CliNet) -> None:
    for running in (cli_net.boot, *cli_net.hosts):
        ready = running.ready
        assert ready["event"] == "ready"
        assert ready["addrs"] and all(
            a.endswith(f"/p2p/{ready['peer_id']}") for a in ready["addrs"]
        )
        assert all(a.startswith("/ip4/127.0.0.1/") for a in ready["addrs"])
        assert running.proc.poll() is None
    assert len({r.peer_id for r in (cli_net.boot, *cli_net.hosts)}) == 3


def test_find_prints_the_best_host_as_one_json_object(cli_net: CliNet) -> None:
    h1, h2 = cli_net.hosts
    done = cli_net.find("--model", LLAMA, "--json")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert len(lines) == 1, done.stdout
    row = json.loads(lines[0])
    assert isinstance(row, dict)
    assert set(row) >= ROW_KEYS
    assert row["peer_id"] in {h1.peer_id, h2.peer_id}
    assert LLAMA in row["models"]
    assert row["latency_ms"] > 0

    # Only host 1 serves mistral: its own record, as declared on its command line.
    done = cli_net.find("--model", MISTRAL, "--json")
    assert done.returncode == 0, done.stderr
    row = json.loads(done.stdout)
    assert row["peer_id"] == h1.peer_id
    assert row["models"] == [LLAMA, MISTRAL]
    assert row["reputation"] == 90
    assert row["location"] == "US"
    assert isinstance(row["uptime_s"], int) and row["uptime_s"] >= 0
    assert row["addrs"] and all(a.endswith(f"/p2p/{h1.peer_id}") for a in row["addrs"])
    assert row["latency_ms"] > 0

    # Criteria flags choose between the two llama hosts.
    for flags, expected in (
        (("--min-reputation", "80"), h1),
        (("--location", "de"), h2),
        (("--max-latency", "60000", "--min-uptime", "0", "--location", "US"), h1),
    ):
        done = cli_net.find("--model", LLAMA, *flags, "--json")
        assert done.returncode == 0, (flags, done.stderr)
        assert json.loads(done.stdout)["peer_id"] == expected.peer_id, flags


def test_find_all_prints_every_match_ranked(cli_net: CliNet) -> None:
    done = cli_net.find("--model", LLAMA, "--all", "--json")
    assert done.returncode == 0, done.stderr
    rows = json.loads(done.stdout)
    assert isinstance(rows, list)
    assert {r["peer_id"] for r in rows} == {h.peer_id for h in cli_net.hosts}
    for row in rows:
        assert set(row) >= ROW_KEYS

    def key(r: dict[str, Any]) -> tuple[float, int, int, str]:
        return (
            r["latency_ms"],
            -r["reputation"],
            -(r["max_jobs"] - r["active_jobs"]),
            r["peer_id"],
        )

    assert rows == sorted(rows, key=key), "ranked by latency, reputation, free capacity"


def test_find_without_a_match_exits_3_with_the_reason(cli_net: CliNet) -> None:
    done = cli_net.find("--model", LLAMA, "--min-reputation", "99", "--json")
    assert done.returncode == 3, done.stderr
    assert done.stdout == ""
    errors = error_lines(done)
    assert len(errors) == 1, done.stderr
    assert "no host matched" in errors[0]
    assert "candidates seen, 2 answered status" in errors[0]
    assert "min_reputation excluded 2" in errors[0]

    done = cli_net.find("--model", "gpt-9", "--json")
    assert done.returncode == 3, done.stderr
    assert done.stdout == ""
    errors = error_lines(done)
    assert len(errors) == 1 and "no host matched" in errors[0], done.stderr


@pytest.fixture
def dead_bootstrap(tmp_path: Path) -> str:
    """A well-formed bootstrap address nobody listens on."""
    peer_id = generate_identity(tmp_path / "nobody.key")
    return f"/ip4/127.0.0.1/tcp/{free_port()}/p2p/{peer_id}"


def test_find_with_an_unreachable_bootstrap_exits_1(p2pd_path: str, dead_bootstrap: str) -> None:
    done = run_cli(p2pd_path, "find", "--bootstrap", dead_bootstrap, "--model", LLAMA, "--json")
    assert done.returncode == 1, done.stderr
    assert done.stdout == ""
    errors = error_lines(done)
    assert len(errors) == 1, done.stderr
    assert "no bootstrap peer reachable" in errors[0]
    assert dead_bootstrap in errors[0]


def test_diagnose_reports_the_node_and_its_bootstrap(cli_net: CliNet) -> None:
    done = run_cli(cli_net.p2pd_path, "diagnose", "--bootstrap", cli_net.boot.addr, "--json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["running"] is True
    assert report["peer_id"]
    assert report["listen_addrs"]
    assert all(a.endswith(f"/p2p/{report['peer_id']}") for a in report["listen_addrs"])
    assert report["bootstrap"] == [{"address": cli_net.boot.addr, "reachable": True, "error": None}]
    assert cli_net.boot.peer_id in report["connected_peers"]
    assert report["dht"]["enabled"] is True
    # Counted once the routing table has filled (identify on the first connection), not
    # right after start, when p2pd says "failed to find any peer in table".
    assert report["dht"]["routing_table_peers"] >= 1, report["dht"]
    assert "error" not in report["dht"]
    assert report["announce"] == []


def test_diagnose_reports_announced_addresses(cli_net: CliNet) -> None:
    announced = "/ip4/127.0.0.1/tcp/4999"
    done = run_cli(
        cli_net.p2pd_path,
        "diagnose",
        "--bootstrap",
        cli_net.boot.addr,
        "--announce",
        announced,
        "--json",
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["announce"] == [announced]
    # p2pd advertises the announced address instead of the one it listens on.
    assert report["listen_addrs"] == [f"{announced}/p2p/{report['peer_id']}"]

    done = run_cli(cli_net.p2pd_path, "diagnose", "--announce", announced)
    assert done.returncode == 0, done.stderr
    assert f"announced:        {announced}" in done.stdout.splitlines()


def test_find_without_the_dht_learns_the_hosts_from_the_bootstrap_node(cli_net: CliNet) -> None:
    """The bootstrap node lists the hosts connected to it (peer exchange, PROTOCOL.md 3.3):
    a client that knows only the bootstrap node finds them with the DHT off."""
    done = cli_net.find("--model", LLAMA, "--all", "--json", P2P_ENABLE_DHT="false")
    assert done.returncode == 0, done.stderr
    assert {row["peer_id"] for row in json.loads(done.stdout)} == {h.peer_id for h in cli_net.hosts}


def test_find_help_and_readable_text_output(cli_net: CliNet) -> None:
    done = run_cli(cli_net.p2pd_path, "find", "--help", COLUMNS="200")
    assert done.returncode == 0
    assert "JSON lines" not in help_text(done.stdout)
    assert "Print the result as one JSON document on one line" in help_text(done.stdout)

    model = "modèle-ünïcode-🚀"
    extra = start(
        cli_net.p2pd_path,
        *("host", "--json", "--dht-mode", "server", "--bootstrap", cli_net.boot.addr),
        *("--model", model),
    )
    try:

        def found() -> bool:
            return cli_net.find("--model", model).returncode == 0

        poll(found, 30, "the unicode host found")
        done = cli_net.find("--model", model)
        assert done.returncode == 0, done.stderr
        assert f'"{model}"' in done.stdout  # as is, not \u-escaped
        assert "\\u" not in done.stdout
        assert json.loads(done.stdout)["models"] == [model]
        assert done.stdout.startswith("{\n  ")  # still indented for people
    finally:
        assert stop(extra) == 0


def test_diagnose_shows_an_unreachable_bootstrap_and_exits_1(
    p2pd_path: str, dead_bootstrap: str
) -> None:
    done = run_cli(p2pd_path, "diagnose", "--bootstrap", dead_bootstrap)
    assert done.returncode == 1, done.stderr
    lines = [line for line in done.stdout.splitlines() if line.startswith("bootstrap:")]
    assert len(lines) == 1, done.stdout
    assert dead_bootstrap in lines[0]
    assert "UNREACHABLE (" in lines[0] and "connection refused" in lines[0]
    assert "running:          True" in done.stdout

    done = run_cli(p2pd_path, "diagnose", "--bootstrap", dead_bootstrap, "--json")
    assert done.returncode == 1, done.stderr
    report = json.loads(done.stdout)
    [entry] = report["bootstrap"]
    assert entry["address"] == dead_bootstrap
    assert entry["reachable"] is False
    assert entry["error"] and "connection refused" in entry["error"]


def test_demo_runs_to_done(p2pd_path: str) -> None:
    done = run_cli(p2pd_path, "demo", "--hosts", "3", timeout=90)
    assert done.returncode == 0, done.stderr
    assert "done" in done.stdout.splitlines()[-1], done.stdout
    assert "Traceback" not in done.stderr


# ------------------------------------------------------- signals and daemon flags


def daemon_argv(parent: int, timeout: float = START_TIMEOUT) -> list[str]:
    """The command line of the p2pd a CLI process spawned, once it exists."""
    argv: list[str] = []

    def spawned() -> bool:
        nonlocal argv
        for pid in child_pids(parent):
            try:
                args = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if any(a.endswith(b"p2pd") for a in args):
                argv = [a.decode() for a in args if a]
                return True
        return False

    poll(spawned, timeout, "p2pd spawned")
    return argv


def flag(argv: list[str], name: str) -> str:
    return argv[argv.index(name) + 1]


LONG_RUNNING = {
    "bootstrap": ("bootstrap", "--json"),
    "host": ("host", "--json", "--model", LLAMA, "--no-dht"),
    "node": ("node", "--json", "--no-dht"),
}


@pytest.mark.parametrize("command", sorted(LONG_RUNNING))
def test_a_signal_during_start_up_or_right_after_ready_is_a_clean_stop(
    p2pd_path: str, command: str
) -> None:
    args = LONG_RUNNING[command]
    # During start-up (p2pd is already running): a clean stop, exit 0, p2pd gone.
    proc = spawn_cli(cli_env(p2pd_path), *args)
    try:
        daemon_argv(proc.pid)
        daemons = child_pids(proc.pid)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    assert proc.returncode == 0, err
    assert "Traceback" not in err
    assert not child_pids(proc.pid) and not any(Path(f"/proc/{p}").exists() for p in daemons)

    # Right after the ready line: the same.
    for sig in (signal.SIGINT, signal.SIGTERM):
        running = start(p2pd_path, *args)
        running.proc.send_signal(sig)
        assert running.proc.wait(timeout=20) == 0, stop(running)
        stop(running)
        assert not [line for line in running.stderr.lines if "Traceback" in line]


def test_bootstrap_allows_more_connections_than_a_client(p2pd_path: str) -> None:
    boot = start(p2pd_path, "bootstrap", "--json")
    try:
        argv = daemon_argv(boot.proc.pid)
        assert flag(argv, "-connHi") == "400", argv
        assert "-dhtServer" in argv
    finally:
        assert stop(boot) == 0

    boot = start(p2pd_path, "bootstrap", "--json", "--max-connections", "55")
    try:
        assert flag(daemon_argv(boot.proc.pid), "-connHi") == "55"
    finally:
        assert stop(boot) == 0

    # The environment variable still applies when the flag is not given.
    env = {**cli_env(p2pd_path), "P2P_MAX_CONNECTIONS": "33"}
    running = Running.launch(env, "bootstrap", "--json")
    try:
        running.stdout.first(START_TIMEOUT)
        assert flag(daemon_argv(running.proc.pid), "-connHi") == "33"
    finally:
        assert stop(running) == 0

    host = start(p2pd_path, *LONG_RUNNING["host"], "--max-connections", "44")
    try:
        assert flag(daemon_argv(host.proc.pid), "-connHi") == "44"
    finally:
        assert stop(host) == 0
    host = start(p2pd_path, *LONG_RUNNING["host"])
    try:
        assert flag(daemon_argv(host.proc.pid), "-connHi") == "10"  # a host keeps the default
    finally:
        assert stop(host) == 0


def test_bootstrap_help_documents_max_connections(p2pd_path: str) -> None:
    done = run_cli(p2pd_path, "bootstrap", "--help", COLUMNS="200")
    assert done.returncode == 0
    assert "--max-connections" in done.stdout
    assert "(P2P_MAX_CONNECTIONS; default 400)" in help_text(done.stdout)
