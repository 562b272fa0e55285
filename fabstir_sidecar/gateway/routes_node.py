"""The node over HTTP (HTTP_API.md sections 3 /health, 4 and 5)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse

from fabstir_sidecar.core.errors import ConfigError, FabstirError, InvalidMultiaddrError
from fabstir_sidecar.gateway.criteria import parse_query
from fabstir_sidecar.gateway.errors import ApiError, bad_request, from_library
from fabstir_sidecar.gateway.state import gateway, read_json
from fabstir_sidecar.node.manager import NodeState
from fabstir_sidecar.protocols.status import HostStatus


async def health(request: Request) -> Response:
    node = gateway(request).node
    if node.state is not NodeState.RUNNING:
        return JSONResponse({"status": "unhealthy", "issues": [f"node is {node.state.value}"]}, 503)
    issues = []
    if not node.is_running():
        issues.append("daemon is restarting")
    else:
        try:
            if not await node.get_connected_peers():
                issues.append("no connected peer")
        except FabstirError as exc:
            issues.append(f"daemon unavailable: {exc}")
    return JSONResponse({"status": "degraded" if issues else "healthy", "issues": issues})


async def node_info(request: Request) -> Response:
    node = gateway(request).node
    try:
        addrs = await node.get_addrs()
        connected = len(await node.get_connected_peers())
    except FabstirError as exc:
        raise from_library(exc) from None
    return JSONResponse(
        {
            "peer_id": node.peer_id,
            "addrs": addrs,
            "running": node.is_running(),
            "connected_peers": connected,
            "daemon": {"restarts": node.restarts},
        }
    )


async def list_peers(request: Request) -> Response:
    try:
        peers = await gateway(request).node.get_connected_peers()
    except FabstirError as exc:
        raise from_library(exc) from None
    return JSONResponse({"peers": peers})


def _unreachable(exc: FabstirError, peer_id: str | None) -> ApiError:
    err = from_library(exc, peer_id=peer_id)
    if err.status in (502, 504):
        err.status, err.code = 502, "peer_unreachable"
    return err


async def connect_peer(request: Request) -> Response:
    body = await read_json(request)
    multiaddr = body.get("multiaddr")
    if multiaddr is None:
        raise bad_request("missing_field", "missing required field 'multiaddr'")
    if not isinstance(multiaddr, str):
        raise ApiError(422, "invalid_multiaddr", "multiaddr must be a string")
    peer = multiaddr.rpartition("/p2p/")[2] or None
    try:
        peer_id = await gateway(request).node.connect_to_peer(multiaddr)
    except InvalidMultiaddrError as exc:
        raise ApiError(422, "invalid_multiaddr", str(exc)) from None
    except FabstirError as exc:
        raise _unreachable(exc, peer) from None
    return JSONResponse({"peer_id": peer_id})


def _host_json(candidate: HostStatus) -> dict[str, Any]:
    host = candidate.host
    return {
        "peer_id": host.peer_id,
        "addrs": list(host.addrs),
        "models": list(host.models),
        "reputation": host.reputation,
        "uptime_s": host.uptime_s,
        "location": host.location,
        "latency_ms": round(candidate.latency_ms, 3),
        "active_jobs": host.active_jobs,
        "max_jobs": host.max_jobs,
        "api_url": host.api_url,
    }


async def list_hosts(request: Request) -> Response:
    selection, limit = parse_query(request.query_params.multi_items())
    ranked = await gateway(request).runner.ranked(selection)
    return JSONResponse({"hosts": [_host_json(c) for c in ranked[:limit]]})


async def send_message(request: Request) -> Response:
    body = await read_json(request)
    for name in ("peer_id", "message"):
        if name not in body:
            raise bad_request("missing_field", f"missing required field {name!r}")
    peer_id = body["peer_id"]
    if not isinstance(peer_id, str) or not peer_id:
        raise bad_request("invalid_field", "peer_id must be a non-empty string")
    try:
        await gateway(request).node.send_message(peer_id, body["message"])
    except ConfigError as exc:
        if isinstance(exc, InvalidMultiaddrError):
            raise ApiError(422, "invalid_multiaddr", str(exc)) from None
        raise bad_request("invalid_field", str(exc)) from None
    except FabstirError as exc:
        raise _unreachable(exc, peer_id.rpartition("/p2p/")[2]) from None
    return JSONResponse({"sent": True}, 202)


async def message_events(request: Request) -> Response:
    gw = gateway(request)
    subscriber = gw.hub.subscribe()  # from now on: before the response starts

    async def events() -> AsyncIterator[bytes]:
        try:
            yield b": subscribed\n\n"
            async for chunk in subscriber.events(gw.settings.keepalive):
                yield chunk
        finally:
            gw.hub.unsubscribe(subscriber)

    return StreamingResponse(
        events(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


async def metrics(request: Request) -> Response:
    gw = gateway(request)
    with contextlib.suppress(FabstirError):
        gw.collector.connected_peers = len(await gw.node.get_connected_peers())
    return Response(generate_latest(gw.registry), media_type=CONTENT_TYPE_LATEST)
