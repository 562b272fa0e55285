"""Nodes and checks shared by the NAT lab tests (tests/netns/nat_lab.py builds the lab)."""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from fabstir_sidecar.host.backends.echo import EchoBackend
from fabstir_sidecar.host.service import HostConfig, HostService
from fabstir_sidecar.node.manager import DiscoveryManager
from fabstir_sidecar.tools.roles import role_config
from tests.netns.nat_lab import NatLab, can_make_namespaces, nat_lab

MODEL = "llama-3.2-1b-instruct"


def assert_no_p2pd_left(lab: NatLab, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while lab.pids() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not lab.pids(), f"processes left in the lab: {lab.pids()}"


@contextlib.contextmanager
def checked_lab(tmp: Path, p2pd: str, **layout: Any) -> Iterator[NatLab]:
    """The lab of ``layout`` (skipped where namespaces cannot be made); no p2pd left after."""
    why = can_make_namespaces()
    if why:
        pytest.skip(why)
    with nat_lab(tmp, p2pd, **layout) as built:
        yield built
        assert_no_p2pd_left(built)


def node(
    lab: NatLab, role: str, preset: str, *, listen: tuple[str, ...] = (), **options: Any
) -> DiscoveryManager:
    """A node of ``preset`` whose p2pd runs in ``role``'s namespace (the environment ignored)."""
    return DiscoveryManager(
        role_config(
            preset,  # type: ignore[arg-type]
            env={},
            p2pd_path=lab.p2pd(role),
            listen=listen or (lab.listen(role),),
            enable_mdns=False,
            connection_timeout=10.0,
            dial_guard=False,  # p2pd runs in a namespace this process cannot reach into
            **options,
        )
    )


def host_node(
    lab: NatLab, role: str, backend: EchoBackend | None = None, **options: Any
) -> tuple[DiscoveryManager, HostService]:
    """A host node serving :data:`MODEL` with ``backend`` (echo) once it starts."""
    host = node(lab, role, "host", **options)
    service = HostService(host, HostConfig(models=(MODEL,)), backend or EchoBackend())
    host.on_start(service.start)
    return host, service


@contextlib.asynccontextmanager
async def autonat_servers(lab: NatLab) -> AsyncIterator[tuple[str, str]]:
    """Two public bootstrap nodes running the AutoNAT service ("r", "o1"): their addresses."""
    async with (
        node(lab, "r", "bootstrap", enable_autonat=True) as boot,
        node(lab, "o1", "bootstrap", enable_autonat=True) as other,
    ):
        yield (await boot.get_addrs())[0], (await other.get_addrs())[0]


async def peers_of(node_: DiscoveryManager) -> dict[str, list[str]]:
    """The peers ``node_``'s daemon is connected to, with the addresses it uses for each."""
    return {str(p.peer_id): list(p.addrs) for p in await node_.control.list_peers()}
