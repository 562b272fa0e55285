"""The HTTP face of a node (shared/HTTP_API.md): OpenAI-compatible chat completions,
fabstir-llm-node-compatible inference and health, the node's API, SSE and /metrics."""

from fabstir_sidecar.gateway.app import create_app
from fabstir_sidecar.gateway.server import serve_gateway
from fabstir_sidecar.gateway.settings import GatewaySettings

__all__ = ["GatewaySettings", "create_app", "serve_gateway"]
