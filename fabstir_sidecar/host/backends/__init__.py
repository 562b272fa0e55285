"""LLM backends a host serves jobs with: the :class:`Backend` protocol and its implementations.

* :class:`EchoBackend` - deterministic echo of the prompt, for demos and tests.
* :class:`OpenAIBackend` - any OpenAI-compatible HTTP server (llama.cpp, vLLM, Ollama...).
* :class:`FabstirNodeBackend` - a fabstir-llm-node's ``POST /v1/inference``.
"""

from .base import Backend, BackendError, Completion, StreamEnd, TokenStream
from .echo import EchoBackend
from .fabstir_node import FabstirNodeBackend
from .openai import OpenAIBackend

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
