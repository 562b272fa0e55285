"""``create_app(node)``: the gateway as an ASGI app over a running DiscoveryManager.

A Python service can mount it in its own server (``Mount("/", create_app(node))``); the
``fabstir-sidecar gateway`` command serves it with uvicorn (see :mod:`.server`).
"""

from __future__ import annotations

import logging

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from fabstir_sidecar.gateway import routes_jobs, routes_node
from fabstir_sidecar.gateway.errors import ApiError
from fabstir_sidecar.gateway.middleware import GatewayMiddleware
from fabstir_sidecar.gateway.settings import GatewaySettings
from fabstir_sidecar.gateway.state import Gateway
from fabstir_sidecar.host.service import HostService
from fabstir_sidecar.node.manager import DiscoveryManager

log = logging.getLogger(__name__)

ROUTES = [
    Route("/health", routes_node.health, methods=["GET"]),
    Route("/metrics", routes_node.metrics, methods=["GET"]),
    Route("/v1/models", routes_jobs.list_models, methods=["GET"]),
    Route("/v1/chat/completions", routes_jobs.chat_completions, methods=["POST"]),
    Route("/v1/inference", routes_jobs.inference, methods=["POST"]),
    Route("/v1/node", routes_node.node_info, methods=["GET"]),
    Route("/v1/peers", routes_node.list_peers, methods=["GET"]),
    Route("/v1/peers", routes_node.connect_peer, methods=["POST"]),
    Route("/v1/hosts", routes_node.list_hosts, methods=["GET"]),
    Route("/v1/messages", routes_node.message_events, methods=["GET"]),
    Route("/v1/messages", routes_node.send_message, methods=["POST"]),
]


async def _api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return exc.response()


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 405:
        err = ApiError(405, "method_not_allowed", f"{request.method} is not allowed here")
        err.headers.update(exc.headers or {})
    elif exc.status_code == 404:
        err = ApiError(404, "not_found", f"no such endpoint: {request.url.path}")
    else:
        err = ApiError(exc.status_code, "invalid_request", str(exc.detail))
    return err.response()


async def _unexpected(request: Request, exc: Exception) -> Response:
    """A bug of ours: logged with its traceback, answered in the contract's shape."""
    log.error("unexpected error in %s %s", request.method, request.url.path, exc_info=exc)
    return ApiError(500, "internal_error", "internal error in the gateway").response()


def create_app(
    node: DiscoveryManager,
    *,
    settings: GatewaySettings | None = None,
    host: HostService | None = None,
) -> Starlette:
    """The HTTP API of ``node`` (a started DiscoveryManager). ``host``: the HostService on
    this node, if it hosts, for the ``fabstir_host_*`` metrics."""
    state = Gateway(node, settings or GatewaySettings(), host)
    app = Starlette(
        routes=ROUTES,
        middleware=[Middleware(GatewayMiddleware, settings=state.settings, stats=state.stats)],
        exception_handlers={
            ApiError: _api_error,
            HTTPException: _http_error,
            Exception: _unexpected,
        },
    )
    app.state.gateway = state
    return app
