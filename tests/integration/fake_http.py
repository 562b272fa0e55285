"""The plumbing of the fake HTTP servers the backend tests run on 127.0.0.1.

A fake is a dataclass holding the server's behaviour and recordings; ``serve_fake`` runs the
standard library's ThreadingHTTPServer with a ``QuietHandler`` subclass in a background thread
and yields the fake, stopping the server on every exit path.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Generic, TypeVar

F = TypeVar("F")


class FakeServer(ThreadingHTTPServer, Generic[F]):
    daemon_threads = True
    fake: F

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # clients that hang up on purpose (timeouts, early close) are expected


class QuietHandler(BaseHTTPRequestHandler):
    """HTTP/1.1, no request log, and the one way to answer with a whole body."""

    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def send_body(self, status: int, body: bytes, content_type: str = "application/json") -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def send_json(self, status: int, payload: object) -> None:
        self.send_body(status, json.dumps(payload).encode())


@contextmanager
def serve_fake(
    handler: type[QuietHandler],
    make_fake: Callable[[int], F],
    on_stop: Callable[[F], None] | None = None,
) -> Iterator[F]:
    """Serve ``handler`` on a free loopback port; ``make_fake(port)`` builds the fake."""
    server: FakeServer[F] = FakeServer(("127.0.0.1", 0), handler)
    server.fake = make_fake(server.server_address[1])
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    )
    thread.start()
    try:
        yield server.fake
    finally:
        if on_stop is not None:
            on_stop(server.fake)
        server.shutdown()
        server.server_close()
        thread.join(5)
