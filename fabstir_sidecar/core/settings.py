"""Node configuration: one place where options are assembled and validated.

Precedence is code / CLI flag > environment variable > default::

    cfg = NodeConfig.load(max_connections=args.max_connections)  # None = "not given"

Every value is checked by :func:`_validate`, which runs both in :meth:`NodeConfig.load`
and in ``NodeConfig.__post_init__``, so a directly constructed ``NodeConfig`` is checked
too. Errors are :class:`~fabstir_sidecar.core.errors.ConfigError` (a ``ValueError``) naming
the environment variable when the value came from the environment, else the option.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal, get_args

from fabstir_sidecar.core.defaults import DEFAULT_TIMEOUT, MAX_MESSAGE_SIZE
from fabstir_sidecar.core.errors import ConfigError
from fabstir_sidecar.core.multiaddr import (
    check_bootstrap_addr,
    check_control_addr,
    check_listen_addr,
)
from fabstir_sidecar.core.nat_options import NAT_ENV, ForcedReachability, check_nat_options
from fabstir_sidecar.core.validate import (
    P2PD_INT_MAX,
    EnvVar,
    check_bool,
    check_choice,
    check_int,
    check_list,
    check_optional_str,
    check_seconds,
    env_bool,
    env_choice,
    env_int,
    env_json_list,
    env_millis,
    env_path,
    env_str,
)

__all__ = [
    "DEFAULT_LISTEN",
    "DEFAULT_PROTOCOL_PREFIX",
    "DHT_MODES",
    "ENV_VARS",
    "DhtMode",
    "NodeConfig",
]

DhtMode = Literal["auto", "server", "client"]
DHT_MODES: Final[tuple[str, ...]] = get_args(DhtMode)
DaemonKind = Literal["process", "docker"]
DAEMON_KINDS: Final[tuple[str, ...]] = get_args(DaemonKind)
DEFAULT_DAEMON_IMAGE: Final = "fabstir-p2pd:local"  # built by daemon/build_images.py

DEFAULT_LISTEN: Final[tuple[str, ...]] = ("/ip4/127.0.0.1/tcp/0",)
DEFAULT_PROTOCOL_PREFIX: Final = "/fabstir-llm/1.0.0"

ENV: Final[dict[str, EnvVar]] = {
    "P2P_LISTEN_ADDRESSES": EnvVar(
        "listen",
        env_json_list,
        'JSON list of listen multiaddrs, e.g. ["/ip4/0.0.0.0/tcp/4001"]',
    ),
    "P2P_BOOTSTRAP_NODES": EnvVar(
        "bootstrap",
        env_json_list,
        "JSON list of bootstrap peer multiaddrs, each ending in /p2p/<peer id>",
    ),
    "P2P_ENABLE_DHT": EnvVar(
        "enable_dht", env_bool, "enable the Kademlia DHT (true/false, 1/0, yes/no, on/off)"
    ),
    "P2P_DHT_MODE": EnvVar("dht_mode", env_choice(DHT_MODES), "DHT mode: auto, server or client"),
    "P2P_ENABLE_MDNS": EnvVar(
        "enable_mdns", env_bool, "enable mDNS discovery on the local network (true/false)"
    ),
    "P2P_MAX_CONNECTIONS": EnvVar(
        "max_connections", env_int, "connection manager high-water mark (integer >= 1)"
    ),
    "P2P_CONNECTION_TIMEOUT": EnvVar(
        "connection_timeout",
        env_millis,
        "connection / dial timeout in MILLISECONDS (number > 0)",
    ),
    "P2P_IDENTITY_FILE": EnvVar(
        "identity_file", env_path, "path of the node's private key file (persistent peer id)"
    ),
    "P2P_DATA_DIR": EnvVar(
        "data_dir",
        env_path,
        "directory for the node's state (peer cache); unset: nothing persisted",
    ),
    "P2P_DAEMON_ADDR": EnvVar(
        "control_addr",
        env_str,
        "attach to a running p2pd at this control multiaddr (/unix/... or /ip4/.../tcp/...) "
        "instead of starting one",
    ),
    "P2P_DAEMON": EnvVar(
        "daemon",
        env_str,
        "how to start p2pd when not attaching: process (default) or docker (a container of "
        "P2P_DAEMON_IMAGE, through the Docker SDK: pip install 'fabstir-sidecar[docker]')",
    ),
    "P2P_DAEMON_IMAGE": EnvVar(
        "daemon_image", env_str, f"image of the docker daemon (default {DEFAULT_DAEMON_IMAGE})"
    ),
    "P2P_HANDLER_ADDR": EnvVar(
        "handler_addr",
        env_str,
        "where the node listens for the streams p2pd forwards, as the daemon dials it "
        "(/unix/<path> or /ip4/<ip>/tcp/<port>); default: chosen from the control address",
    ),
    **NAT_ENV,
}
"""Every ``P2P_*`` environment variable :meth:`NodeConfig.load` reads."""
ENV_VARS: Final[dict[str, str]] = {var: env.help for var, env in ENV.items()}


# ---------------------------------------------------------------------- validation


def _validate(values: Mapping[str, Any], names: Mapping[str, str]) -> dict[str, Any]:
    """Check every field of ``values``; return them normalised (tuples, floats, Path).

    ``names[field]`` is what an error calls the field: the environment variable when
    the value came from the environment, else the field name.
    """

    def n(field_name: str) -> str:
        return names.get(field_name, field_name)

    out: dict[str, Any] = dict(values)
    out["listen"] = check_list(values["listen"], name=n("listen"), check=check_listen_addr)
    out["announce"] = check_list(values["announce"], name=n("announce"), check=check_listen_addr)
    out["bootstrap"] = check_list(
        values["bootstrap"], name=n("bootstrap"), check=check_bootstrap_addr
    )
    out["enable_dht"] = check_bool(values["enable_dht"], n("enable_dht"))
    out["enable_mdns"] = check_bool(values["enable_mdns"], n("enable_mdns"))
    out["restart_daemon"] = check_bool(values["restart_daemon"], n("restart_daemon"))
    out["dial_guard"] = check_bool(values["dial_guard"], n("dial_guard"))
    check_choice(values["dht_mode"], DHT_MODES, n("dht_mode"))

    out["max_connections"] = check_int(
        values["max_connections"], n("max_connections"), minimum=1, maximum=P2PD_INT_MAX
    )
    out["min_connections"] = check_int(
        values["min_connections"], n("min_connections"), minimum=0, maximum=P2PD_INT_MAX
    )
    if out["min_connections"] > out["max_connections"]:
        raise ConfigError(
            n("min_connections"),
            out["min_connections"],
            f"must be <= {n('max_connections')} ({out['max_connections']})",
        )
    out["max_message_size"] = check_int(
        values["max_message_size"], n("max_message_size"), minimum=1
    )

    out["connection_timeout"] = check_seconds(values["connection_timeout"], n("connection_timeout"))
    out["daemon_start_timeout"] = check_seconds(
        values["daemon_start_timeout"], n("daemon_start_timeout")
    )
    out["daemon_stop_grace"] = check_seconds(
        values["daemon_stop_grace"], n("daemon_stop_grace"), allow_zero=True
    )
    out["message_linger"] = check_seconds(
        values["message_linger"], n("message_linger"), allow_zero=True
    )

    prefix = values["protocol_prefix"]
    if (
        not isinstance(prefix, str)
        or not prefix.startswith("/")
        or len(prefix) < 2
        or prefix.endswith("/")
        or any(c.isspace() for c in prefix)
    ):
        raise ConfigError(
            n("protocol_prefix"),
            prefix,
            "must start with '/', not end with '/' and contain no whitespace "
            "(e.g. /fabstir-llm/1.0.0)",
        )

    data_dir = values["data_dir"]
    if data_dir is not None:
        if not isinstance(data_dir, str | os.PathLike) or not os.fspath(data_dir):
            raise ConfigError(n("data_dir"), data_dir, "expected a directory path")
        out["data_dir"] = Path(data_dir).expanduser()
    out["provide_interval"] = check_seconds(values["provide_interval"], n("provide_interval"))
    out["mdns_interval"] = check_seconds(values["mdns_interval"], n("mdns_interval"))
    if out["mdns_interval"] < 1.0:
        raise ConfigError(n("mdns_interval"), values["mdns_interval"], "must be >= 1 second")

    identity = values["identity_file"]
    if identity is not None:
        if not isinstance(identity, str | os.PathLike) or not os.fspath(identity):
            raise ConfigError(n("identity_file"), identity, "expected a file path")
        out["identity_file"] = Path(identity)

    out["p2pd_path"] = check_optional_str(values["p2pd_path"], n("p2pd_path"))
    control = check_optional_str(values["control_addr"], n("control_addr"))
    out["control_addr"] = (
        None if control is None else check_control_addr(control, name=n("control_addr"))
    )
    handler = check_optional_str(values["handler_addr"], n("handler_addr"))
    out["handler_addr"] = (
        None if handler is None else check_control_addr(handler, name=n("handler_addr"))
    )
    check_choice(values["daemon"], DAEMON_KINDS, n("daemon"))
    if values["daemon"] == "docker" and out["control_addr"] is not None:
        raise ConfigError(
            n("daemon"),
            values["daemon"],
            "a docker daemon is started by the node: not with an attach address",
        )
    image = check_optional_str(values["daemon_image"], n("daemon_image"))
    if image is None or any(c.isspace() for c in image):
        raise ConfigError(n("daemon_image"), values["daemon_image"], "expected an image name")
    out["daemon_image"] = image
    out.update(check_nat_options(values, n))
    return out


# --------------------------------------------------------------------------- config


@dataclass(frozen=True, slots=True)
class NodeConfig:
    """Validated, immutable configuration of one node.

    Build it with :meth:`load` to honour environment variables; constructing it
    directly validates too. Multiaddrs are stored as canonical strings.
    """

    listen: tuple[str, ...] = DEFAULT_LISTEN
    bootstrap: tuple[str, ...] = ()
    announce: tuple[str, ...] = ()
    enable_dht: bool = True
    dht_mode: DhtMode = "auto"
    enable_mdns: bool = True
    max_connections: int = 10
    min_connections: int = 0
    connection_timeout: float = DEFAULT_TIMEOUT
    """Seconds (the ``P2P_CONNECTION_TIMEOUT`` environment variable is milliseconds)."""
    protocol_prefix: str = DEFAULT_PROTOCOL_PREFIX
    max_message_size: int = MAX_MESSAGE_SIZE
    identity_file: Path | None = None
    p2pd_path: str | None = None
    control_addr: str | None = None
    daemon_start_timeout: float = 10.0
    daemon_stop_grace: float = 3.0
    message_linger: float = 0.5
    """Seconds ``stop()`` keeps connections open after the last SDK message was sent.

    ``/message`` has no acknowledgement (docs/protocol.md §2-4): the sender's daemon has
    written the bytes, but a busy receiver whose daemon has not yet accepted the stream loses
    it when the connection closes. Lingering gives it that time (0: no linger)."""
    restart_daemon: bool = True
    dial_guard: bool = True
    """Probe a peer's TCP addresses before p2pd dials it, so a peer that is down leaves no
    dial backoff (daemon/dialguard.py). Used only with a p2pd process of our own: a daemon
    in another network namespace (a container, an attached daemon, a lab) may reach what
    this process cannot."""
    data_dir: Path | None = None
    """Where the node keeps state (the peer cache). None: nothing is written to disk."""
    mdns_interval: float = 10.0
    """Seconds between mDNS queries (RFC 6762 allows no less than 1)."""
    provide_interval: float = 3600.0
    """Seconds between DHT re-provides of a host's model records (docs/protocol.md §8)."""
    daemon: DaemonKind = "process"
    """How p2pd is started when not attaching: a local ``process`` or a ``docker`` container."""
    daemon_image: str = DEFAULT_DAEMON_IMAGE
    handler_addr: str | None = None
    """Listen address of the inbound-stream handler, as p2pd dials it. None: a unix socket
    next to a unix control socket, else a TCP port on the address that routes to p2pd."""
    # NAT traversal (docs/nat.md; checked in core/nat_options.py).
    relay_service: bool = True
    """Relay circuits for other peers (bootstrap nodes are the relays of hosts behind NAT).
    False passes ``-relayService=false``, which p2pd 1.1.12 ignores: every p2pd relays
    (measured; a warning is logged, docs/nat.md)."""
    relay_client: bool = False
    """Reserve slots on ``relays`` and advertise /p2p-circuit addresses when unreachable."""
    relays: tuple[str, ...] = ()
    """Relays the relay client uses; empty: the bootstrap nodes."""
    enable_autonat: bool = False
    """Answer other peers' AutoNAT probes (the AutoNAT client is always on)."""
    enable_hole_punching: bool = False
    """DCUtR: upgrade relayed connections to direct ones (p2pd ties it to ``-autonat``)."""
    enable_nat_portmap: bool = False
    """Ask the router for a port mapping (UPnP-IGD / NAT-PMP)."""
    force_reachability: ForcedReachability = "auto"
    """``auto``: AutoNAT decides; ``public``/``private``: labs, containers, known setups."""
    metrics_addr: str | None = None
    """p2pd's Prometheus endpoint (host:port); None: a loopback port when a NAT feature is on."""

    def __post_init__(self) -> None:
        values = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        for key, value in _validate(values, {}).items():
            object.__setattr__(self, key, value)

    @property
    def relay_addrs(self) -> tuple[str, ...]:
        """The relays this node reserves on and dials through: ``relays``, else bootstrap."""
        return self.relays or self.bootstrap

    @property
    def message_protocol(self) -> str:
        """Protocol id of the Fabstir message protocol, e.g. ``/fabstir-llm/1.0.0/message``."""
        return self.protocol_prefix + "/message"

    @classmethod
    def load(
        cls,
        *,
        env: Mapping[str, str] | None = None,
        defaults: Mapping[str, Any] | None = None,
        **overrides: Any,
    ) -> NodeConfig:
        """Defaults (the field defaults, updated by ``defaults``), then ``env``
        (``os.environ`` if None), then non-None ``overrides``.

        ``defaults`` are the caller's own defaults (e.g. a role preset's), which an
        environment variable still overrides. Unknown option names raise ``TypeError``. An
        empty list for ``listen`` or ``bootstrap`` is applied (it means "none"); ``None``
        means "not given". Empty environment variables count as unset.
        """
        given = defaults or {}
        unknown = sorted((set(overrides) | set(given)) - set(_DEFAULTS))
        if unknown:
            raise TypeError(f"NodeConfig.load() got unknown option(s): {', '.join(unknown)}")

        environ: Mapping[str, str] = os.environ if env is None else env
        values: dict[str, Any] = {**_DEFAULTS, **given}
        names: dict[str, str] = {}
        for var, (field_name, parse, _) in ENV.items():
            raw = environ.get(var)
            if raw is None or not raw.strip():
                continue
            values[field_name] = parse(raw, var)
            names[field_name] = var
        for key, value in overrides.items():
            if value is not None:
                values[key] = value
                names.pop(key, None)
        # Validate here, where we know which values came from the environment, so
        # errors name the variable; __post_init__ re-checks the (now valid) values.
        return cls(**_validate(values, names))


_DEFAULTS: Final[dict[str, Any]] = {f.name: f.default for f in dataclasses.fields(NodeConfig)}
