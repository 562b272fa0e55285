"""The gateway's knobs (HTTP_API.md sections 0 and 1); the CLI fills them from flags/env."""

from __future__ import annotations

import math
from dataclasses import dataclass

from fabstir_sidecar.core.errors import ConfigError

MIB = 1024 * 1024


@dataclass(frozen=True, slots=True)
class GatewaySettings:
    token: str | None = None  # bearer token; None: no auth (loopback only, the CLI checks)
    job_timeout: float = 300.0  # seconds from sending a job to its terminal frame
    max_body: int = MIB  # request bodies above: 413
    body_timeout: float = 30.0  # reading a request body: 408 after
    header_timeout: float = 30.0  # a connection that sends no complete request head: closed
    max_concurrent: int = 256  # requests in flight (not /health, /metrics): 503 above
    sse_buffer: int = 256  # messages buffered per GET /v1/messages subscriber
    keepalive: float = 15.0  # seconds without an SSE message before a keepalive comment

    def __post_init__(self) -> None:
        if self.token is not None and not self.token:
            raise ConfigError("token", self.token, "an empty token is not a token")
        for name in ("job_timeout", "body_timeout", "header_timeout", "keepalive"):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
                raise ConfigError(name, value, "must be a number of seconds > 0")
        for name in ("max_body", "max_concurrent", "sse_buffer"):
            if getattr(self, name) < 1:
                raise ConfigError(name, getattr(self, name), "must be >= 1")
