"""The plugin's pure parts, without a daemon: specs, names, the leak tag, log lines, the
slow backend wrapper."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import anyio
import pytest

from fabstir_sidecar import ConfigError, EchoBackend, HostConfig
from fabstir_sidecar.testing import Faults, FaultyBackend, HostSpec
from fabstir_sidecar.testing.leaks import TAG_VAR, tagged, tagged_daemons
from fabstir_sidecar.testing.logcapture import LogCollector, format_record
from fabstir_sidecar.testing.spec import node_names
from fabstir_sidecar.wire.messages import JobRequest


def test_host_spec_validates_at_once_and_normalises() -> None:
    spec = HostSpec(models=["a", "b"], reputation=90, location="de")
    assert spec.models == ("a", "b")
    assert spec.host_config().location == "DE"
    assert isinstance(spec.make_backend(), EchoBackend)
    with pytest.raises(ConfigError, match="location"):
        HostSpec(location="Germany")
    with pytest.raises(ConfigError, match="models"):
        HostSpec(models="llama")
    with pytest.raises(ConfigError, match="max_jobs"):
        HostSpec(max_jobs=0)


def test_node_names() -> None:
    assert node_names([HostSpec(), HostSpec(name="x"), HostSpec()]) == ["host0", "x", "host2"]
    with pytest.raises(ConfigError, match="unique"):
        node_names([HostSpec(name="x"), HostSpec(name="x")])
    with pytest.raises(ConfigError, match="bootstrap"):
        node_names([HostSpec(name="bootstrap")])
    with pytest.raises(ConfigError, match="expected HostSpec"):
        node_names([HostConfig(models=("m",))])  # type: ignore[list-item]


def test_tag_matches_whole_variables_only() -> None:
    environ = b"A=1\0" + f"{TAG_VAR}=t-1".encode() + b"\0B=2"
    assert tagged(environ, "t-1")
    assert not tagged(environ, "t-")
    assert not tagged(b"X" + f"{TAG_VAR}=t-1".encode(), "t-1")


def test_no_proc_means_nothing_found(tmp_path: Path) -> None:
    assert tagged_daemons("t", proc=tmp_path / "absent") == set()


def test_log_lines_name_daemons_and_peers() -> None:
    daemon = logging.LogRecord("fabstir_sidecar.p2pd.p2pd", logging.ERROR, "", 0, "boom", (), None)
    daemon.p2pd_pid = 42
    daemon.p2pd_fields = {"error": "x"}
    node = logging.LogRecord(
        "fabstir_sidecar.node.manager", logging.INFO, "", 0, "node started", (), None
    )
    node.peer_id = "12D3KooWpeer"
    names: dict[int | str, str] = {42: "host1", "12D3KooWpeer": "bootstrap"}
    assert format_record(daemon, names).endswith(
        "ERROR   host1 p2pd[42] p2pd.p2pd: boom {'error': 'x'}"
    )
    assert "bootstrap node.manager: node started peer_id=12D3KooWpeer" in format_record(node, names)


def test_collector_raises_the_level_for_the_test_and_restores_it() -> None:
    logger = logging.getLogger("fabstir_sidecar")
    before = logger.level
    collector = LogCollector()
    collector.attach()
    try:
        logging.getLogger("fabstir_sidecar.node.manager").info("seen %d", 1)
    finally:
        collector.detach()
    logging.getLogger("fabstir_sidecar.node.manager").info("not seen")
    assert logger.level == before
    assert [r.getMessage() for r in collector.records] == ["seen 1"]


def request(prompt: str) -> JobRequest:
    return JobRequest(
        job_id="j", model="m", prompt=prompt, max_tokens=None, temperature=None, stream=True
    )


@pytest.mark.anyio
async def test_slow_backend_delays_then_streams_the_same_tokens() -> None:
    faults = Faults()
    backend = FaultyBackend(EchoBackend(), faults)
    assert backend.name == "echo"
    assert (await backend.complete(request("a b"))).text == "echo: a b"
    faults.job_delay = 0.2
    started = time.monotonic()
    async with backend.stream(request("a b")) as tokens:
        got = [t async for t in tokens]
    assert time.monotonic() - started >= 0.2
    assert got == ["echo:", " a", " b"]
    assert tokens.completion.text == "echo: a b"
    with anyio.move_on_after(0.05) as scope:
        await backend.complete(request("x"))
    assert scope.cancelled_caught
    faults.clear()
    assert faults == Faults()


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"
