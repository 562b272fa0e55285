"""Inference backends by name: ``echo``, ``openai:URL`` (or a bare ``http(s)://`` URL),
``fabstir-node:URL``.

The table :data:`BACKENDS` is the one place that knows the backend kinds, how to build one
from a spec string and where its credentials come from (the environment): adding a kind is
one entry.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final

from fabstir_sidecar.backend import Backend
from fabstir_sidecar.core.errors import ConfigError
from fabstir_sidecar.host.backends.echo import EchoBackend
from fabstir_sidecar.host.backends.fabstir_node import FabstirNodeBackend
from fabstir_sidecar.host.backends.openai import OpenAIBackend

__all__ = ["BACKENDS", "BackendKind", "make_backend", "parse_backend_spec"]


@dataclass(frozen=True, slots=True)
class BackendKind:
    """One kind of backend: ``build(url, env)`` makes it (``url`` is None when not taken)."""

    name: str
    takes_url: bool
    build: Callable[[str | None, Mapping[str, str]], Backend]
    summary: str

    @property
    def usage(self) -> str:
        return f"{self.name}:URL" if self.takes_url else self.name


def _echo(_url: str | None, _env: Mapping[str, str]) -> Backend:
    return EchoBackend()


def _fabstir_node(url: str | None, _env: Mapping[str, str]) -> Backend:
    assert url is not None
    return FabstirNodeBackend(url)


def _openai(url: str | None, env: Mapping[str, str]) -> Backend:
    assert url is not None
    return OpenAIBackend(url, api_key=env.get("OPENAI_API_KEY") or None)


BACKENDS: Final[Mapping[str, BackendKind]] = MappingProxyType(
    {
        kind.name: kind
        for kind in (
            BackendKind("echo", False, _echo, "deterministic echo of the prompt words"),
            BackendKind(
                "openai",
                True,
                _openai,
                "an OpenAI-compatible server at URL (Bearer $OPENAI_API_KEY if set)",
            ),
            BackendKind(
                "fabstir-node",
                True,
                _fabstir_node,
                "a fabstir-llm-node's HTTP API at URL (POST /v1/inference)",
            ),
        )
    }
)

_BARE_URL_KIND: Final = "openai"  # a bare http(s) URL means an OpenAI-compatible server


def _expected() -> str:
    forms = [kind.usage for kind in BACKENDS.values()]
    return f"expected {', '.join(forms)} or an http(s) base URL"


def parse_backend_spec(spec: str) -> tuple[BackendKind, str | None]:
    """The kind and URL a spec names; ConfigError (name ``backend``) for anything else."""
    url: str | None
    if spec.startswith(("http://", "https://")):
        name, url = _BARE_URL_KIND, spec
    else:
        name, sep, rest = spec.partition(":")
        url = rest if sep else None
    kind = BACKENDS.get(name)
    if kind is None or kind.takes_url != (url is not None) or url == "":
        raise ConfigError("backend", spec, _expected())
    return kind, url


def make_backend(spec: str, *, env: Mapping[str, str] | None = None) -> Backend:
    """The backend ``spec`` names, its credentials read from ``env`` (``os.environ`` if
    None). Raises ConfigError for an unknown spec or an invalid URL."""
    kind, url = parse_backend_spec(spec)
    return kind.build(url, os.environ if env is None else env)
