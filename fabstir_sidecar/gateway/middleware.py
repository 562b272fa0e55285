"""Pure ASGI middleware in front of every route: auth first, then the body cap and the
concurrent-request cap, and the request counter (HTTP_API.md section 1)."""

from __future__ import annotations

import hmac

import anyio
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from fabstir_sidecar.gateway.errors import ApiError, busy
from fabstir_sidecar.gateway.settings import GatewaySettings
from fabstir_sidecar.gateway.stats import GatewayStats

ROUTES = frozenset(
    {
        "/health",
        "/metrics",
        "/v1/models",
        "/v1/chat/completions",
        "/v1/inference",
        "/v1/node",
        "/v1/peers",
        "/v1/hosts",
        "/v1/messages",
    }
)
UNCAPPED = frozenset({"/health", "/metrics"})


DRAIN_LIMIT = 64 * 1024 * 1024  # read (and discard) this much of a body refused as too large


async def _drain(receive: Receive) -> None:
    """Read the rest of a refused body, so the client reads the 413 instead of a reset
    connection; beyond ``DRAIN_LIMIT`` the connection is closed after the answer anyway."""
    drained = 0
    while drained <= DRAIN_LIMIT:
        message = await receive()
        if message["type"] != "http.request":
            return
        drained += len(message.get("body", b""))
        if not message.get("more_body", False):
            return


def route_label(path: str) -> str:
    return path if path in ROUTES else "other"


def token_ok(expected: str, authorization: bytes | None) -> bool:
    """``Authorization: Bearer <token>``, compared in constant time."""
    if authorization is None:
        return False
    scheme, _, given = authorization.decode("latin-1").partition(" ")
    if scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(given.strip().encode(), expected.encode())


class GatewayMiddleware:
    def __init__(self, app: ASGIApp, settings: GatewaySettings, stats: GatewayStats) -> None:
        self.app = app
        self.settings = settings
        self.stats = stats
        self.in_flight = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        status = 500

        async def counting_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            rejection = self._check(scope, path)
            if rejection is not None:
                if rejection.status == 413:
                    with anyio.move_on_after(self.settings.body_timeout):
                        await _drain(receive)
                await rejection.response()(scope, receive, counting_send)
                return
            capped = path not in UNCAPPED
            if capped:
                self.in_flight += 1
            try:
                await self.app(scope, self._capped_receive(receive), counting_send)
            finally:
                if capped:
                    self.in_flight -= 1
        finally:
            self.stats.count_request(route_label(path), status)

    def _check(self, scope: Scope, path: str) -> ApiError | None:
        headers = dict(scope["headers"])
        token = self.settings.token
        if (
            token is not None
            and path != "/health"
            and not token_ok(token, headers.get(b"authorization"))
        ):
            return ApiError(
                401,
                "invalid_token",
                "missing or wrong bearer token (Authorization: Bearer <token>)",
                headers={"WWW-Authenticate": "Bearer"},
            )
        length = headers.get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.settings.max_body:
            return self._too_large()
        if path not in UNCAPPED and self.in_flight >= self.settings.max_concurrent:
            return busy(
                "gateway_busy",
                f"the gateway serves {self.settings.max_concurrent} requests at a time",
            )
        return None

    def _too_large(self) -> ApiError:
        return ApiError(
            413,
            "request_too_large",
            f"request body over {self.settings.max_body} bytes",
            headers={"Connection": "close"},
        )

    def _capped_receive(self, receive: Receive) -> Receive:
        """Counts body bytes (chunked uploads have no Content-Length): over the cap raises."""
        received = 0
        cap = self.settings.max_body

        async def wrapped() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > cap:
                    if message.get("more_body", False):
                        with anyio.move_on_after(self.settings.body_timeout):
                            await _drain(receive)
                    raise self._too_large()
            return message

        return wrapped
