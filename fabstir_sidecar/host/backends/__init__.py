"""LLM backends a host serves jobs with: the :class:`Backend` protocol and its implementations.

* :class:`EchoBackend` - deterministic echo of the prompt, for demos and tests.
* :class:`OpenAIBackend` - any OpenAI-compatible HTTP server (llama.cpp, vLLM, Ollama...).
* :class:`FabstirNodeBackend` - a fabstir-llm-node's ``POST /v1/inference``.
"""

from fabstir_sidecar.backend import (
    Backend,
    BackendError,
    Completion,
    StreamEnd,
    TokenStream,
)
from fabstir_sidecar.host.backends.echo import EchoBackend
from fabstir_sidecar.host.backends.fabstir_node import FabstirNodeBackend
from fabstir_sidecar.host.backends.openai import OpenAIBackend

__all__ = [
    "Backend",
    "BackendError",
    "Completion",
    "EchoBackend",
    "FabstirNodeBackend",
    "OpenAIBackend",
    "StreamEnd",
    "TokenStream",
]
