"""What every route reads: the node, the client, the runner, the hub, the settings."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

import anyio
from prometheus_client import CollectorRegistry
from starlette.requests import Request

from fabstir_sidecar.client import FabstirClient, RetryConfig
from fabstir_sidecar.gateway.errors import ApiError, bad_request
from fabstir_sidecar.gateway.hub import MessageHub
from fabstir_sidecar.gateway.metrics import NodeCollector
from fabstir_sidecar.gateway.runner import Runner
from fabstir_sidecar.gateway.settings import GatewaySettings
from fabstir_sidecar.gateway.stats import GatewayStats
from fabstir_sidecar.host.service import HostService
from fabstir_sidecar.node.manager import DiscoveryManager


@dataclass
class Gateway:
    """The gateway's state, its parts built from ``node``, ``settings`` and ``host`` (the
    HostService on this node, if it hosts, for the ``fabstir_host_*`` metrics)."""

    node: DiscoveryManager
    settings: GatewaySettings
    host: HostService | None = None
    stats: GatewayStats = field(init=False, default_factory=GatewayStats)
    client: FabstirClient = field(init=False)
    runner: Runner = field(init=False)
    hub: MessageHub = field(init=False)
    collector: NodeCollector = field(init=False)
    registry: CollectorRegistry = field(init=False)
    models_seen: dict[str, int] = field(default_factory=dict)  # model -> first seen (unix s)

    def __post_init__(self) -> None:
        node, stats = self.node, self.stats
        # No client-side retries nor local queueing (pacing): the gateway fails over to
        # other hosts itself, answers 503 when every one is busy, and never re-sends a job
        # whose request reached a host (PROTOCOL.md section 2).
        self.client = FabstirClient(
            node, retry=RetryConfig.none(), job_timeout=self.settings.job_timeout, pacing=False
        )
        self.runner = Runner(node, self.client, stats)
        self.hub = MessageHub(node, buffer=self.settings.sse_buffer, stats=stats)
        self.collector = NodeCollector(node, self.client, stats, self.host)
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(self.collector)

    def first_seen(self, model: str) -> int:
        return self.models_seen.setdefault(model, int(time.time()))


def gateway(request: Request) -> Gateway:
    gw: Gateway = request.app.state.gateway
    return gw


async def read_json(request: Request) -> dict[str, Any]:
    """The body as a JSON object (400 invalid_json otherwise), read within body_timeout."""
    settings = gateway(request).settings
    try:
        with anyio.fail_after(settings.body_timeout):
            raw = await request.body()
    except TimeoutError:
        raise ApiError(
            408, "request_timeout", f"request body not received within {settings.body_timeout}s"
        ) from None
    try:
        body = json.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise bad_request("invalid_json", f"the body is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise bad_request("invalid_json", "the body must be a JSON object")
    return body
