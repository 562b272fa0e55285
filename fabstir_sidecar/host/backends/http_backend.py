"""What the backends that forward jobs to an HTTP server share: the server's URL (checked),
the timeout, the response size cap, and an httpx client closed only if the backend made it."""

from __future__ import annotations

import math

import httpx

from fabstir_sidecar.backend import AsyncClosing
from fabstir_sidecar.core.errors import ConfigError
from fabstir_sidecar.host.backends.http_response import describe

__all__ = ["HttpBackend"]


class HttpBackend(AsyncClosing):
    """The base of a backend that posts to ``base_url`` + ``path``.

    Bad settings raise ConfigError naming them: a ``base_url`` that is not an http(s) URL,
    a ``timeout`` that is not a positive number of seconds, a ``max_response_bytes`` < 1.
    """

    def __init__(
        self,
        base_url: str,
        path: str,
        timeout: float,
        client: httpx.AsyncClient | None,
        max_response_bytes: int,
    ) -> None:
        try:
            url = httpx.URL(base_url.strip().rstrip("/") + path)
        except (httpx.InvalidURL, ValueError, TypeError) as exc:
            raise ConfigError("base_url", base_url, describe(exc)) from None
        if url.scheme not in ("http", "https") or not url.host:
            raise ConfigError("base_url", base_url, "expected an http:// or https:// URL")
        if not (timeout > 0 and math.isfinite(timeout)):
            raise ConfigError("timeout", timeout, "must be a positive number of seconds")
        if max_response_bytes < 1:
            raise ConfigError("max_response_bytes", max_response_bytes, "must be positive")
        self._url = url
        self._timeout = timeout
        self._max_bytes = max_response_bytes
        self._owns_client = client is None
        self._closed = False
        self._client = client if client is not None else httpx.AsyncClient(timeout=timeout)

    async def aclose(self) -> None:
        """Close the HTTP client if the backend created it (idempotent)."""
        self._closed = True
        if self._owns_client:
            await self._client.aclose()
