"""(b) AutoNAT: behind the NAT a node learns it is private, on the public segment public.

Needs a public-looking range (tests/netns/nat_lab.py: 11/8 inside isolated namespaces) and
a public peer running the AutoNAT service (the bootstrap node, ``enable_autonat``)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest

from fabstir_sidecar.node.manager import DiscoveryManager
from fabstir_sidecar.node.reachability import Reachability
from tests.netns.nat_lab import NatLab, reachability_when
from tests.netns.nat_nodes import autonat_servers, checked_lab, node

pytestmark = [pytest.mark.netns, pytest.mark.anyio]

AUTONAT_DEADLINE = 45.0  # measured: 10-16 s to a verdict


@pytest.fixture
def lab(tmp_path: Path, p2pd_path: str) -> Iterator[NatLab]:
    with checked_lab(tmp_path, p2pd_path, public=True, observers=1) as built:
        yield built


async def verdict(lab: NatLab, role: str, node_: DiscoveryManager) -> tuple[Reachability, float]:
    started = time.monotonic()
    found = await reachability_when(lab, role, node_, lambda f: f.status != "unknown", 0.5)
    return found, time.monotonic() - started


async def test_autonat_private_behind_nat_public_outside(lab: NatLab) -> None:
    with anyio.fail_after(AUTONAT_DEADLINE + 20):
        async with (
            autonat_servers(lab) as boots,
            node(lab, "h1", "host", bootstrap=boots, metrics_addr="127.0.0.1:9100") as h,
            node(lab, "c", "client", bootstrap=boots, metrics_addr="127.0.0.1:9100") as c,
        ):
            results: dict[str, tuple[Reachability, float]] = {}

            async def judge(role: str, n: DiscoveryManager) -> None:
                results[role] = await verdict(lab, role, n)

            with anyio.fail_after(AUTONAT_DEADLINE):
                async with anyio.create_task_group() as tg:
                    tg.start_soon(judge, "h1", h)
                    tg.start_soon(judge, "c", c)
            (h_found, h_s), (c_found, c_s) = results["h1"], results["c"]
            print(
                f"AutoNAT verdicts: host {h_found.status} {h_s:.1f}s, "
                f"client {c_found.status} {c_s:.1f}s"
            )
            assert (h_found.status, h_found.source) == ("private", "autonat")
            assert (c_found.status, c_found.source) == ("public", "autonat")
            assert any("relay_client" in note for note in h_found.notes)
