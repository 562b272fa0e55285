"""Sample wire data shared by the wire-message tests and the codec micro-benchmark."""

from __future__ import annotations

from typing import Any

HOST_JSON: dict[str, Any] = {
    "peer_id": "12D3KooWHost",
    "addrs": ["/ip4/127.0.0.1/tcp/4001"],
    "models": ["llama-3.2-1b-instruct"],
    "reputation": 90,
    "uptime_s": 3600,
    "location": "US",
    "api_url": "http://127.0.0.1:8080",
    "active_jobs": 1,
    "max_jobs": 4,
    "version": "0.1.0",
}
"""A HOST record as a host sends it in its ``status`` (docs/protocol.md §6.2)."""
