"""``/fabstir-llm/discovery/1.0.0``: peer exchange (docs/protocol.md §6.3). Answers are hints."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from fabstir_sidecar.daemon.control import DaemonControl
from fabstir_sidecar.protocols import ids
from fabstir_sidecar.rpc.client import call
from fabstir_sidecar.rpc.exchange import Exchange
from fabstir_sidecar.rpc.server import RequestHandler
from fabstir_sidecar.wire.messages import DiscoveryRequest, DiscoveryResponse, PeerInfo


def rank_for_request(peers: Sequence[PeerInfo], request: DiscoveryRequest) -> list[PeerInfo]:
    """Hosts serving every requested model first (stable otherwise), cut to the limit."""
    wanted = set(request.models or ())
    ordered = sorted(peers, key=lambda p: not wanted.issubset(p.models))
    return ordered[: request.limit]


def discovery_handler(known_peers: Callable[[], Sequence[PeerInfo]]) -> RequestHandler:
    async def handle(exchange: Exchange) -> None:
        request = DiscoveryRequest.from_json(exchange.request)
        peers = rank_for_request(known_peers(), request)
        await exchange.send(DiscoveryResponse(peers=tuple(peers)).to_json())

    return handle


async def request_discovery(
    control: DaemonControl,
    peer_id: str,
    *,
    models: Sequence[str] | None = None,
    limit: int | None = None,
    timeout: float,
) -> list[PeerInfo]:
    request = DiscoveryRequest(
        models=tuple(models) if models else None, **({"limit": limit} if limit is not None else {})
    )
    frame = await call(control, peer_id, ids.DISCOVERY, request.to_json(), timeout=timeout)
    return list(DiscoveryResponse.from_json(frame).peers)
