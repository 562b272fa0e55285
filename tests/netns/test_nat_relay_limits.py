"""(e) Relay limits: go-libp2p's relay resets a relayed connection after 128 KiB per
direction (or 2 minutes) when the relay is not public, whatever p2pd's -relayDataLimit says.
A job streaming more than that over the circuit must either complete or fail with a clear
typed error, never hang."""

from __future__ import annotations

import time

import anyio
import pytest

from fabstir_sidecar.client import FabstirClient, RetryConfig
from fabstir_sidecar.core.circuit import is_circuit
from fabstir_sidecar.core.errors import FabstirError
from fabstir_sidecar.host.backends.echo import EchoBackend
from fabstir_sidecar.wire.messages import JobRequest
from tests.netns.nat_lab import NatLab
from tests.netns.nat_nodes import MODEL, host_node, node, peers_of
from tests.netns.test_nat_relay import BEHIND_NAT, lab10

pytestmark = [pytest.mark.netns, pytest.mark.anyio]
__all__ = ["lab10"]  # the fixture, re-exported for pytest

RELAY_DATA_LIMIT = 128 * 1024
TOKEN = "x" * 99


class BigEcho(EchoBackend):
    """Streams ``count`` tokens of 100 bytes whatever the prompt (the prompt is the count)."""

    def _words(self, request: JobRequest) -> tuple[list[str], str]:
        return ["echo:"] + [TOKEN] * int(request.prompt), "stop"


async def test_job_larger_than_the_relay_limit_fails_typed_or_completes(lab10: NatLab) -> None:
    lab = lab10
    count = 3 * RELAY_DATA_LIMIT // 100  # ~384 KiB of tokens, plus the result message
    with anyio.fail_after(90):
        async with node(lab, "r", "bootstrap") as boot:
            boot_addr = (await boot.get_addrs())[0]
            host, _ = host_node(lab, "h1", BigEcho(), bootstrap=(boot_addr,), **BEHIND_NAT)
            async with host:
                circuit = f"{boot_addr}/p2p-circuit/p2p/{host.peer_id}"
                async with node(lab, "c", "client", bootstrap=(boot_addr,)) as client_node:
                    await anyio.sleep(1.0)  # the reservation (measured: well under 1 s)
                    client = FabstirClient(client_node, retry=RetryConfig.none(), job_timeout=30.0)
                    small = await client.run_job(circuit, MODEL, "10")
                    assert small.tokens_used == 11
                    peers = await peers_of(client_node)
                    assert all(is_circuit(a) for a in peers[str(host.peer_id)])

                    started = time.monotonic()
                    received = 0
                    outcome: str
                    try:
                        async for token in client.stream_job(circuit, MODEL, str(count)):
                            received += len(token)
                        outcome = "completed"
                    except FabstirError as exc:
                        outcome = f"{type(exc).__name__}: {exc}"
                    took = time.monotonic() - started
                    print(f"relayed job: {outcome!r} after {received} bytes, {took:.1f}s")
                    if outcome == "completed":
                        assert received >= count * 100
                    else:
                        assert received < count * 100
                    assert took < 35.0
