"""Reading an untrusted HTTP server's responses, and the one-line errors for its failures.

Every failure of a backend server - unreachable, timeout, HTTP status >= 400, a body that
is not the expected JSON, a body over the size cap - becomes one
:class:`~fabstir_sidecar.backend.BackendError` whose message names the endpoint (never a
password embedded in its URL) and quotes at most a short snippet of what the server sent.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, Final, NoReturn

import httpx

from fabstir_sidecar.backend import BackendError

__all__ = [
    "DEFAULT_MAX_RESPONSE_BYTES",
    "ERROR_BODY_LIMIT",
    "SNIPPET_CHARS",
    "Endpoint",
    "describe",
    "loads_or_none",
    "snippet",
]

DEFAULT_MAX_RESPONSE_BYTES: Final = 8 * 1024 * 1024
"""How much of a backend server's answer is read at most, unless a backend is told otherwise."""
ERROR_BODY_LIMIT: Final = 64 * 1024
"""How much of an error response is read to quote the server's message."""
SNIPPET_CHARS: Final = 200


def snippet(text: str, limit: int = SNIPPET_CHARS) -> str:
    """``text`` on one line (whitespace runs collapsed), at most ``limit`` characters."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


def describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {snippet(text)}" if text else type(exc).__name__


def loads_or_none(text: str | bytes) -> object:
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        return None


class Endpoint:
    """One server endpoint as errors show it: ``shown_url`` and the ``timeout`` applied."""

    __slots__ = ("shown_url", "timeout")

    def __init__(self, shown_url: str, timeout: float) -> None:
        self.shown_url = shown_url
        self.timeout = timeout

    # ---------------------------------------------------------------- errors

    def transport_error(self, exc: httpx.HTTPError) -> BackendError:
        if isinstance(exc, httpx.TimeoutException):
            what = "connecting" if isinstance(exc, httpx.ConnectTimeout) else "waiting for data"
            return self.timed_out(f" ({what})")
        if isinstance(exc, httpx.ConnectError):
            return BackendError(f"cannot connect to backend at {self.shown_url}: {describe(exc)}")
        return BackendError(f"backend at {self.shown_url} failed: {describe(exc)}")

    def timed_out(self, detail: str = "") -> BackendError:
        return BackendError(
            f"backend at {self.shown_url} timed out after {self.timeout:g}s{detail}"
        )

    def bad_response(self, problem: str) -> BackendError:
        return BackendError(f"backend at {self.shown_url} sent a bad response: {problem}")

    def reported(self, message: str) -> BackendError:
        """The server said, in a well-formed answer, that it failed."""
        return BackendError(f"backend at {self.shown_url} reported an error: {snippet(message)}")

    def too_large(self, limit: int) -> NoReturn:
        raise self.bad_response(f"response larger than {limit} bytes")

    # ---------------------------------------------------------------- reading

    async def raise_for_status(
        self, response: httpx.Response, message_of: Callable[[object], str | None]
    ) -> None:
        """BackendError for a non-2xx answer, quoting ``message_of(its JSON body)`` if any."""
        if 200 <= response.status_code < 300:
            return
        raw = await self.read(response, limit=ERROR_BODY_LIMIT, truncate=True)
        text = raw.decode("utf-8", errors="replace")
        message = message_of(loads_or_none(text))
        detail = snippet(message if message is not None else text) or "(empty body)"
        raise BackendError(
            f"backend at {self.shown_url} answered HTTP {response.status_code}: {detail}"
        )

    async def read(self, response: httpx.Response, *, limit: int, truncate: bool) -> bytes:
        """The body, at most ``limit`` bytes: cut there if ``truncate``, else BackendError."""
        declared = response.headers.get("Content-Length", "")
        if not truncate and declared.isdigit() and int(declared) > limit:
            self.too_large(limit)
        body = bytearray()
        async for data in response.aiter_bytes():
            body += data
            if len(body) > limit:
                if truncate:
                    return bytes(body[:limit])
                self.too_large(limit)
        return bytes(body)

    def json_object(self, data: bytes | str, what: str) -> dict[str, Any]:
        """``data`` as a JSON object; BackendError naming ``what`` if it is not one."""
        try:
            payload = json.loads(data)
        except (ValueError, RecursionError) as exc:  # RecursionError: absurdly deep nesting
            raw = data.encode() if isinstance(data, str) else data
            text = raw[:SNIPPET_CHARS].decode("utf-8", errors="replace")
            raise self.bad_response(
                f"{what} is not valid JSON ({describe(exc)}): {snippet(text, 80)!r}"
            ) from None
        if not isinstance(payload, dict):
            raise self.bad_response(f"{what} is not a JSON object")
        return payload
