"""Which interfaces a wildcard listener's mDNS uses, read from a real kernel (ifaddr + flags).

A namespace of its own gets veth interfaces in every state that matters: up with a primary
and a secondary address, down, up without multicast, and up with a labelled address. The
listing runs inside it; nothing is sent.
"""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
from collections.abc import Iterator

import pytest

from tests.netns.conftest import REPO, _ip, netns_pids

pytestmark = [pytest.mark.netns]

_LIST = (
    "import json; from fabstir_sidecar.discovery.mdns import local_ipv4_interfaces, "
    "mdns_interfaces; print(json.dumps([local_ipv4_interfaces(), "
    "mdns_interfaces(['/ip4/0.0.0.0/tcp/4001'])]))"
)


@pytest.fixture
def namespace() -> Iterator[str]:
    ns = f"fabns-if-{secrets.token_hex(3)}"
    probe = _ip("netns", "add", ns, check=False)
    if probe.returncode != 0:
        pytest.skip(f"cannot create network namespaces (needs root/CAP_SYS_ADMIN): {probe.stderr}")
    try:
        yield ns
    finally:
        left = netns_pids(ns)
        _ip("netns", "del", ns, check=False)
        assert not left, f"processes were left in {ns}: {left}"


def test_wildcard_uses_up_multicast_interfaces_primary_address(namespace: str) -> None:
    def ip(*args: str) -> None:
        _ip("-n", namespace, *args)

    ip("link", "set", "lo", "up")
    for i in range(1, 5):
        ip("link", "add", f"d{i}", "type", "veth", "peer", "name", f"p{i}")
        ip("link", "set", f"p{i}", "up")
    ip("addr", "add", "10.5.0.1/24", "dev", "d1")
    ip("addr", "add", "10.5.0.2/24", "dev", "d1")  # secondary: not announced
    ip("addr", "add", "10.6.0.1/24", "dev", "d2")  # d2 stays down
    ip("link", "set", "d3", "multicast", "off")
    ip("addr", "add", "10.7.0.1/24", "dev", "d3")
    ip("addr", "add", "10.8.0.1/24", "dev", "d4")
    ip("addr", "add", "10.8.0.9/24", "label", "d4:a", "dev", "d4")  # an alias label
    for name in ("d1", "d3", "d4"):
        ip("link", "set", name, "up")

    result = subprocess.run(
        ["ip", "netns", "exec", namespace, sys.executable, "-c", _LIST],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
    )
    assert result.returncode == 0, result.stderr
    listed, chosen = json.loads(result.stdout)
    assert listed == {"d1": "10.5.0.1", "d4": "10.8.0.1"}
    assert chosen == ["10.5.0.1", "10.8.0.1"]
