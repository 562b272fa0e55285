"""Role presets: the ``NodeConfig`` a bootstrap node, a host or a client starts from.

One place for these values, so that code and the CLI get the same node::

    from fabstir_sidecar.tools.roles import role_config

    boot = DiscoveryManager(role_config("bootstrap"))
    host = DiscoveryManager(role_config("host", bootstrap=[boot_addr]))

Precedence, highest first: explicit (non-``None``) options > the preset's *pinned* values
> environment variables > the preset's *defaults* > ``NodeConfig`` defaults. Pinned values
are what makes the role (a bootstrap node is a DHT server); defaults are only a better
starting point for it (a bootstrap node keeps more connections) that ``P2P_*`` variables
still override.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Final, Literal, get_args

from fabstir_sidecar.core.errors import ConfigError
from fabstir_sidecar.core.settings import NodeConfig

__all__ = ["BOOTSTRAP_MAX_CONNECTIONS", "PRESETS", "ROLES", "Role", "RolePreset", "role_config"]

Role = Literal["bootstrap", "host", "client", "direct"]
ROLES: Final[tuple[str, ...]] = get_args(Role)

# A bootstrap node is a DHT server every node dials: p2pd's connection manager must not trim
# it down to a client's 10 connections.
BOOTSTRAP_MAX_CONNECTIONS: Final = 400


def _frozen(values: Mapping[str, Any]) -> Mapping[str, Any]:
    return MappingProxyType(dict(values))


@dataclass(frozen=True, slots=True)
class RolePreset:
    """``pinned`` beat the environment, ``defaults`` lose to it; explicit options beat both."""

    name: str
    summary: str
    pinned: Mapping[str, Any] = field(default_factory=dict)
    defaults: Mapping[str, Any] = field(default_factory=dict)

    def config(self, *, env: Mapping[str, str] | None = None, **options: Any) -> NodeConfig:
        """The node's configuration: see the module docstring for the precedence."""
        given = {key: value for key, value in options.items() if value is not None}
        return NodeConfig.load(env=env, defaults=self.defaults, **{**self.pinned, **given})


PRESETS: Final[Mapping[str, RolePreset]] = MappingProxyType(
    {
        preset.name: preset
        for preset in (
            RolePreset(
                "bootstrap",
                "a bootstrap / DHT server node every other node dials",
                pinned=_frozen({"enable_dht": True, "dht_mode": "server"}),
                defaults=_frozen({"max_connections": BOOTSTRAP_MAX_CONNECTIONS}),
            ),
            RolePreset("host", "a node that serves models (with a HostService)"),
            RolePreset("client", "a node that finds hosts and runs jobs on them"),
            RolePreset(
                "direct",
                "a short-lived client that talks only to the peer it is given (no DHT)",
                pinned=_frozen({"enable_dht": False}),
            ),
        )
    }
)


def role_config(role: Role, *, env: Mapping[str, str] | None = None, **options: Any) -> NodeConfig:
    """The ``NodeConfig`` of a node in ``role``; ``options`` are ``NodeConfig`` fields
    (``None`` = not given), ``env`` the environment (``os.environ`` if ``None``)."""
    preset = PRESETS.get(role)
    if preset is None:
        raise ConfigError("role", role, f"expected one of {', '.join(ROLES)}")
    return preset.config(env=env, **options)
