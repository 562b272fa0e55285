"""Serving the gateway app with uvicorn inside the caller's event loop.

``serve_gateway`` binds the socket itself (port 0 picks one), yields the URL only once
uvicorn accepts connections, and on exit stops uvicorn gracefully (bounded). Signals stay
the caller's business (uvicorn's own handlers are not installed). A connection that has not
sent a complete request head within ``header_timeout`` is closed (uvicorn has no such
timeout of its own before the first request).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Generator

import anyio
import uvicorn
from starlette.types import ASGIApp
from uvicorn.protocols.http.h11_impl import H11Protocol

from fabstir_sidecar.core.errors import ConfigError

SHUTDOWN_GRACE = 2.0


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield  # the CLI's signal handling (run_until_shutdown_signal) stays in charge


def _protocol_with_header_timeout(header_timeout: float) -> type[H11Protocol]:
    class HeaderTimeoutProtocol(H11Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            super().connection_made(transport)  # type: ignore[arg-type]
            self._head_timer = self.loop.call_later(header_timeout, self._head_timeout)

        def _head_timeout(self) -> None:
            if self.cycle is None and not self.transport.is_closing():
                self.transport.close()

        def connection_lost(self, exc: Exception | None) -> None:
            self._head_timer.cancel()
            super().connection_lost(exc)

    return HeaderTimeoutProtocol


def parse_http_addr(value: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[v6]:PORT`` for IPv6) → (host, port); ConfigError otherwise."""
    host, sep, port = value.strip().rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ConfigError("--http", value, "expected HOST:PORT, e.g. 127.0.0.1:8080")
    return host, int(port)


def is_loopback(host: str) -> bool:
    return host in ("localhost", "::1") or host.startswith("127.")


def bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto IPPROTO_TCP: asyncio sets TCP_NODELAY only on sockets that say they are TCP, and
    # without it Nagle's algorithm holds a response's body back by a delayed-ACK (40 ms).
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ConfigError("--http", f"{host}:{port}", exc.strerror or str(exc)) from None
    sock.set_inheritable(True)
    return sock


@contextlib.asynccontextmanager
async def serve_gateway(
    app: ASGIApp, host: str = "127.0.0.1", port: int = 0, *, header_timeout: float = 30.0
) -> AsyncIterator[str]:
    """Serve ``app``; yields ``http://HOST:PORT`` once connections are accepted."""
    sock = bind(host, port)
    bound_port = sock.getsockname()[1]
    config = uvicorn.Config(
        app,
        log_level="warning",
        access_log=False,
        lifespan="off",
        http=_protocol_with_header_timeout(header_timeout),
        timeout_keep_alive=5,
        timeout_graceful_shutdown=int(SHUTDOWN_GRACE),
        backlog=2048,
    )
    server = _Server(config)
    stopped = anyio.Event()
    failure: list[BaseException] = []

    async def run() -> None:
        try:
            with anyio.CancelScope(shield=True):
                await server.serve(sockets=[sock])
        except BaseException as exc:  # startup failed: reported below
            failure.append(exc)
        finally:
            stopped.set()

    shown = f"[{host}]" if ":" in host else host
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(run)
            try:
                while not server.started:
                    if stopped.is_set():
                        raise ConfigError("--http", f"{host}:{port}", f"server failed: {failure}")
                    await anyio.sleep(0.005)
                yield f"http://{shown}:{bound_port}"
            finally:
                server.should_exit = True
                with anyio.CancelScope(shield=True), anyio.move_on_after(SHUTDOWN_GRACE + 3):
                    await stopped.wait()
                server.force_exit = True
    finally:
        sock.close()
