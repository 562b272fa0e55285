"""What a test network is made of: pure data, validated before any daemon starts."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from fabstir_sidecar.backend import Backend
from fabstir_sidecar.core.errors import ConfigError
from fabstir_sidecar.host.backends.echo import EchoBackend
from fabstir_sidecar.host.service import HostConfig


@dataclass(frozen=True)
class HostSpec:
    """One host of a test network.

    ``backend`` defaults to a fresh :class:`~fabstir_sidecar.EchoBackend` per host; it is
    not closed by the network (it may be shared or reused across restarts).
    ``restart_daemon``: whether the node restarts its p2pd when it dies (the library's
    supervisor). Off by default, so a killed host stays down until ``restart()``.
    ``node_options``: further :class:`~fabstir_sidecar.NodeConfig` fields for this node.
    """

    models: Sequence[str] = ("echo",)
    reputation: int = 0
    location: str | None = None
    backend: Backend | None = None
    max_jobs: int = 4
    api_url: str | None = None
    job_timeout: float = 60.0
    name: str | None = None
    restart_daemon: bool = False
    node_options: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if isinstance(self.models, str):
            raise ConfigError("models", self.models, "expected a list of model names")
        object.__setattr__(self, "models", tuple(self.models))
        self.host_config()  # validates models, reputation, location, max_jobs now

    def host_config(self) -> HostConfig:
        return HostConfig(
            models=tuple(self.models),
            reputation=self.reputation,
            location=self.location,
            max_jobs=self.max_jobs,
            api_url=self.api_url,
            job_timeout=self.job_timeout,
        )

    def make_backend(self) -> Backend:
        return self.backend if self.backend is not None else EchoBackend()


def node_names(hosts: Sequence[HostSpec]) -> list[str]:
    """``host0``, ``host1``... unless a spec names itself; duplicates are refused."""
    wrong = [type(h).__name__ for h in hosts if not isinstance(h, HostSpec)]
    if wrong:
        raise ConfigError("hosts", wrong, "expected HostSpec items (fabstir_sidecar.testing)")
    names = [spec.name or f"host{i}" for i, spec in enumerate(hosts)]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ConfigError("hosts", duplicates, "host names must be unique")
    reserved = {"bootstrap"} & set(names)
    if reserved:
        raise ConfigError("hosts", sorted(reserved), "'bootstrap' is the bootstrap node's name")
    return names
