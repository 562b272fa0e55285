"""``/fabstir-llm/status/1.0.0``: one status_request, one status frame (docs/protocol.md §6.2)."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from fabstir_sidecar.core.errors import MalformedMessageError
from fabstir_sidecar.daemon.control import DaemonControl
from fabstir_sidecar.protocols import ids
from fabstir_sidecar.rpc.client import call
from fabstir_sidecar.rpc.exchange import Exchange
from fabstir_sidecar.rpc.server import RequestHandler
from fabstir_sidecar.wire.messages import Host, Status, StatusRequest


@dataclass(frozen=True, slots=True)
class HostStatus:
    """A host's own status answer plus the round trip we measured for it."""

    host: Host
    latency_ms: float


def status_handler(record: Callable[[], Awaitable[Host]]) -> RequestHandler:
    async def handle(exchange: Exchange) -> None:
        StatusRequest.from_json(exchange.request)
        await exchange.send(Status(host=await record()).to_json())

    return handle


async def request_status(control: DaemonControl, peer_id: str, *, timeout: float) -> HostStatus:
    started = time.perf_counter()
    frame = await call(control, peer_id, ids.STATUS, StatusRequest().to_json(), timeout=timeout)
    latency_ms = (time.perf_counter() - started) * 1000
    host = Status.from_json(frame).host
    if host.peer_id != peer_id:
        # Only the secure channel says who answered; a record claiming otherwise is discarded.
        raise MalformedMessageError(
            f"status from {peer_id} describes another peer ({host.peer_id}): discarded"
        )
    return HostStatus(host=host, latency_ms=latency_ms)
