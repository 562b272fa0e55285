"""Node configuration: one place where options are assembled and validated.

Precedence is code / CLI flag > environment variable > default::

    cfg = NodeConfig.load(max_connections=args.max_connections)  # None = "not given"

Every value is checked by :func:`_validate`, which runs both in :meth:`NodeConfig.load`
and in ``NodeConfig.__post_init__``, so a directly constructed ``NodeConfig`` is checked
too. Errors are :class:`~fabstir_sidecar.errors.ConfigError` (a ``ValueError``) naming
the environment variable when the value came from the environment, else the option.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal, get_args

from multiaddr import Multiaddr

from fabstir_sidecar.errors import ConfigError, InvalidMultiaddrError, InvalidPeerIdError

__all__ = [
    "DEFAULT_LISTEN",
    "DEFAULT_PROTOCOL_PREFIX",
    "DHT_MODES",
    "ENV_VARS",
    "DhtMode",
    "NodeConfig",
    "parse_multiaddr",
    "parse_peer_id",
    "split_peer_multiaddr",
]

DhtMode = Literal["auto", "server", "client"]
DHT_MODES: Final[tuple[str, ...]] = get_args(DhtMode)
DaemonKind = Literal["process", "docker"]
DAEMON_KINDS: Final[tuple[str, ...]] = get_args(DaemonKind)
DEFAULT_DAEMON_IMAGE: Final = "fabstir-p2pd:local"  # built by daemon/build_images.py

DEFAULT_LISTEN: Final[tuple[str, ...]] = ("/ip4/127.0.0.1/tcp/0",)
DEFAULT_PROTOCOL_PREFIX: Final = "/fabstir-llm/1.0.0"

ENV_VARS: Final[dict[str, str]] = {
    "P2P_LISTEN_ADDRESSES": 'JSON list of listen multiaddrs, e.g. ["/ip4/0.0.0.0/tcp/4001"]',
    "P2P_BOOTSTRAP_NODES": "JSON list of bootstrap peer multiaddrs, each ending in /p2p/<peer id>",
    "P2P_ENABLE_DHT": "enable the Kademlia DHT (true/false, 1/0, yes/no, on/off)",
    "P2P_DHT_MODE": "DHT mode: auto, server or client",
    "P2P_ENABLE_MDNS": "enable mDNS discovery on the local network (true/false)",
    "P2P_MAX_CONNECTIONS": "connection manager high-water mark (integer >= 1)",
    "P2P_CONNECTION_TIMEOUT": "connection / dial timeout in MILLISECONDS (number > 0)",
    "P2P_IDENTITY_FILE": "path of the node's private key file (persistent peer id)",
    "P2P_DATA_DIR": "directory for the node's state (peer cache); unset: nothing persisted",
    "P2P_DAEMON_ADDR": "attach to a running p2pd at this control multiaddr (/unix/... or "
    "/ip4/.../tcp/...) instead of starting one",
    "P2P_DAEMON": "how to start p2pd when not attaching: process (default) or docker (a "
    "container of P2P_DAEMON_IMAGE, through the Docker SDK: pip install 'fabstir-sidecar[docker]')",
    "P2P_DAEMON_IMAGE": f"image of the docker daemon (default {DEFAULT_DAEMON_IMAGE})",
    "P2P_HANDLER_ADDR": "where the node listens for the streams p2pd forwards, as the daemon "
    "dials it (/unix/<path> or /ip4/<ip>/tcp/<port>); default: chosen from the control address",
}

_TRUE: Final = frozenset({"true", "1", "yes", "on"})
_FALSE: Final = frozenset({"false", "0", "no", "off"})

_HOST_PROTOCOLS: Final = frozenset({"ip4", "ip6", "dns", "dns4", "dns6"})
_TRANSPORT_PROTOCOLS: Final = frozenset({"tcp", "udp"})


# ------------------------------------------------------------------------- helpers

_B58_ALPHABET: Final = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
_B58_INDEX: Final = {c: i for i, c in enumerate(_B58_ALPHABET)}
_MH_IDENTITY: Final = 0x00
_MH_SHA2_256: Final = 0x12
_MAX_INLINE_KEY: Final = 42  # peer-id spec: keys <= 42 bytes use the identity multihash


def _b58decode(text: str) -> bytes | None:
    """Decode base58btc; ``None`` if ``text`` has a character outside the alphabet."""
    num = 0
    for char in text:
        digit = _B58_INDEX.get(char)
        if digit is None:
            return None
        num = num * 58 + digit
    body = num.to_bytes((num.bit_length() + 7) // 8, "big") if num else b""
    return b"\x00" * (len(text) - len(text.lstrip("1"))) + body


def parse_peer_id(value: str, *, name: str) -> str:
    """Check that ``value`` is a plausible base58 libp2p peer id and return it.

    A peer id is a base58btc multihash: sha2-256 of the key (``Qm...``) or the key
    itself inlined with the identity hash (``12D3KooW...`` for Ed25519).
    """
    if not isinstance(value, str) or not value:
        raise InvalidPeerIdError(name, value, "expected a base58 peer id such as 12D3KooW...")
    raw = _b58decode(value)
    if raw is None:
        raise InvalidPeerIdError(name, value, "peer id is not base58btc")
    ok = len(raw) >= 2 and len(raw) == raw[1] + 2
    if ok and raw[0] == _MH_SHA2_256:
        ok = raw[1] == 32
    elif ok and raw[0] == _MH_IDENTITY:
        ok = 1 <= raw[1] <= _MAX_INLINE_KEY
    else:
        ok = False
    if not ok:
        raise InvalidPeerIdError(
            name, value, "not a libp2p peer id (base58 sha2-256/identity multihash)"
        )
    return value


def parse_multiaddr(value: str, *, name: str) -> Multiaddr:
    """Parse ``value`` as a multiaddr; :class:`InvalidMultiaddrError` names ``name``."""
    if not isinstance(value, str):
        raise InvalidMultiaddrError(name, value, f"expected a string, got {type(value).__name__}")
    if not value.strip():
        raise InvalidMultiaddrError(name, value, "empty multiaddr")
    if value != value.strip():
        raise InvalidMultiaddrError(name, value, "leading or trailing whitespace")
    try:
        addr = Multiaddr(value)
    except Exception as exc:  # third-party boundary: translate whatever the parser raises
        raise InvalidMultiaddrError(name, value, _parser_reason(exc, value)) from exc
    if not list(addr.protocols()):
        raise InvalidMultiaddrError(name, value, "empty multiaddr")
    return addr


def _parser_reason(exc: Exception, value: str) -> str:
    """The multiaddr library's message without its echo of the input."""
    reason = str(exc) or type(exc).__name__
    reason = reason.removeprefix(f"Invalid MultiAddr {value!r}: ")
    return reason.removesuffix(f" (string: {value})")


def _protocol_names(addr: Multiaddr) -> list[str]:
    return [str(proto.name) for proto in addr.protocols()]


def split_peer_multiaddr(value: str, *, name: str) -> tuple[str, str]:
    """Split ``/ip4/.../tcp/N/p2p/<id>`` into ``("/ip4/.../tcp/N", "<id>")``.

    The multiaddr must end with ``/p2p/<peer id>`` and have an address before it
    (relay addresses ``.../p2p/<relay>/p2p-circuit/p2p/<id>`` are fine). Both parts
    are returned in canonical form; the peer id in base58.
    """
    addr = parse_multiaddr(value, name=name)
    items = list(addr.items())
    if not items or items[-1][0].name != "p2p":
        raise InvalidMultiaddrError(
            name, value, "must end with /p2p/<peer id> (the bootstrap/remote peer's id)"
        )
    if len(items) == 1:
        raise InvalidMultiaddrError(name, value, "has no transport address before /p2p/<peer id>")
    canonical = str(addr)
    address, _, peer_id = canonical.rpartition("/p2p/")
    try:
        parse_peer_id(peer_id, name=name)
    except ConfigError as exc:
        raise InvalidMultiaddrError(name, value, exc.reason) from exc
    return address, peer_id


def _check_listen_addr(value: str, *, name: str) -> str:
    """Validate a listen/announce multiaddr (host + tcp/udp) and return it canonical."""
    addr = parse_multiaddr(value, name=name)
    protos = _protocol_names(addr)
    if (
        not protos
        or protos[0] not in _HOST_PROTOCOLS
        or not _TRANSPORT_PROTOCOLS.intersection(protos)
    ):
        raise InvalidMultiaddrError(
            name,
            value,
            "expected /ip4, /ip6 or /dns* with /tcp or /udp "
            "(e.g. /ip4/0.0.0.0/tcp/4001, /ip4/0.0.0.0/udp/4001/quic-v1, .../tcp/4001/ws)",
        )
    return str(addr)


def _check_bootstrap_addr(value: str, *, name: str) -> str:
    address, peer_id = split_peer_multiaddr(value, name=name)
    return f"{address}/p2p/{peer_id}"


def _check_control_addr(value: str, *, name: str) -> str:
    addr = parse_multiaddr(value, name=name)
    protos = _protocol_names(addr)
    if protos != ["unix"] and protos not in (["ip4", "tcp"], ["ip6", "tcp"]):
        raise InvalidMultiaddrError(
            name, value, "expected a p2pd control address /unix/<path> or /ip4/<ip>/tcp/<port>"
        )
    return str(addr)


# ---------------------------------------------------------------------- validation


def _addr_list(value: object, *, name: str, check: Callable[..., str]) -> tuple[str, ...]:
    if isinstance(value, str | bytes) or not isinstance(value, Sequence):
        raise ConfigError(name, value, f"expected a list of strings, got {type(value).__name__}")
    result = []
    for i, item in enumerate(value):
        item_name = f"{name}[{i}]"
        if not isinstance(item, str):
            raise ConfigError(item_name, item, f"expected a string, got {type(item).__name__}")
        result.append(check(item, name=item_name))
    return tuple(result)


def _bool(value: object, name: str) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(name, value, "expected a boolean")
    return value


def _int(value: object, name: str, *, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(name, value, "expected an integer")
    if value < minimum:
        raise ConfigError(name, value, f"must be >= {minimum}")
    return value


def _seconds(value: object, name: str, *, allow_zero: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(name, value, "expected a number of seconds")
    if not math.isfinite(value):
        raise ConfigError(name, value, "must be a finite number of seconds")
    if value < 0 or (value == 0 and not allow_zero):
        raise ConfigError(name, value, "must be >= 0 seconds" if allow_zero else "must be > 0")
    return float(value)


def _optional_str(value: object, name: str) -> str | None:
    if value is None:
        return None
    if isinstance(value, os.PathLike):
        value = os.fspath(value)
    if not isinstance(value, str) or not value:
        raise ConfigError(name, value, "expected a non-empty string")
    return value


def _validate(values: Mapping[str, Any], names: Mapping[str, str]) -> dict[str, Any]:
    """Check every field of ``values``; return them normalised (tuples, floats, Path).

    ``names[field]`` is what an error calls the field: the environment variable when
    the value came from the environment, else the field name.
    """

    def n(field_name: str) -> str:
        return names.get(field_name, field_name)

    out: dict[str, Any] = dict(values)
    out["listen"] = _addr_list(values["listen"], name=n("listen"), check=_check_listen_addr)
    out["announce"] = _addr_list(values["announce"], name=n("announce"), check=_check_listen_addr)
    out["bootstrap"] = _addr_list(
        values["bootstrap"], name=n("bootstrap"), check=_check_bootstrap_addr
    )
    out["enable_dht"] = _bool(values["enable_dht"], n("enable_dht"))
    out["enable_mdns"] = _bool(values["enable_mdns"], n("enable_mdns"))
    out["restart_daemon"] = _bool(values["restart_daemon"], n("restart_daemon"))
    if values["dht_mode"] not in DHT_MODES:
        raise ConfigError(
            n("dht_mode"), values["dht_mode"], f"expected one of {', '.join(DHT_MODES)}"
        )

    out["max_connections"] = _int(values["max_connections"], n("max_connections"), minimum=1)
    out["min_connections"] = _int(values["min_connections"], n("min_connections"), minimum=0)
    if out["min_connections"] > out["max_connections"]:
        raise ConfigError(
            n("min_connections"),
            out["min_connections"],
            f"must be <= {n('max_connections')} ({out['max_connections']})",
        )
    out["max_message_size"] = _int(values["max_message_size"], n("max_message_size"), minimum=1)

    out["connection_timeout"] = _seconds(values["connection_timeout"], n("connection_timeout"))
    out["daemon_start_timeout"] = _seconds(
        values["daemon_start_timeout"], n("daemon_start_timeout")
    )
    out["daemon_stop_grace"] = _seconds(
        values["daemon_stop_grace"], n("daemon_stop_grace"), allow_zero=True
    )
    out["message_linger"] = _seconds(values["message_linger"], n("message_linger"), allow_zero=True)

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
    out["provide_interval"] = _seconds(values["provide_interval"], n("provide_interval"))
    out["mdns_interval"] = _seconds(values["mdns_interval"], n("mdns_interval"))
    if out["mdns_interval"] < 1.0:
        raise ConfigError(n("mdns_interval"), values["mdns_interval"], "must be >= 1 second")

    identity = values["identity_file"]
    if identity is not None:
        if not isinstance(identity, str | os.PathLike) or not os.fspath(identity):
            raise ConfigError(n("identity_file"), identity, "expected a file path")
        out["identity_file"] = Path(identity)

    out["p2pd_path"] = _optional_str(values["p2pd_path"], n("p2pd_path"))
    control = _optional_str(values["control_addr"], n("control_addr"))
    out["control_addr"] = (
        None if control is None else _check_control_addr(control, name=n("control_addr"))
    )
    handler = _optional_str(values["handler_addr"], n("handler_addr"))
    out["handler_addr"] = (
        None if handler is None else _check_control_addr(handler, name=n("handler_addr"))
    )
    if values["daemon"] not in DAEMON_KINDS:
        raise ConfigError(
            n("daemon"), values["daemon"], f"expected one of {', '.join(DAEMON_KINDS)}"
        )
    if values["daemon"] == "docker" and out["control_addr"] is not None:
        raise ConfigError(
            n("daemon"),
            values["daemon"],
            "a docker daemon is started by the node: not with an attach address",
        )
    image = _optional_str(values["daemon_image"], n("daemon_image"))
    if image is None or any(c.isspace() for c in image):
        raise ConfigError(n("daemon_image"), values["daemon_image"], "expected an image name")
    out["daemon_image"] = image
    return out


# ----------------------------------------------------------------------- env parsing


def _env_json_list(raw: str, var: str) -> list[Any]:
    try:
        parsed = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ConfigError(
            var, raw, f'not valid JSON ({exc.msg}); expected a JSON list such as ["/ip4/..."]'
        ) from exc
    if not isinstance(parsed, list):
        raise ConfigError(
            var, raw, f"expected a JSON list of strings, got JSON {type(parsed).__name__}"
        )
    return parsed


def _env_bool(raw: str, var: str) -> bool:
    word = raw.strip().lower()
    if word in _TRUE:
        return True
    if word in _FALSE:
        return False
    raise ConfigError(var, raw, "expected true/false, 1/0, yes/no or on/off")


def _env_int(raw: str, var: str) -> int:
    try:
        return int(raw.strip())
    except ValueError:
        raise ConfigError(var, raw, "expected an integer") from None


def _env_millis(raw: str, var: str) -> float:
    try:
        millis = float(raw.strip())
    except ValueError:
        raise ConfigError(var, raw, "expected a number of milliseconds") from None
    if not math.isfinite(millis) or millis <= 0:
        raise ConfigError(var, raw, "must be a positive, finite number of milliseconds")
    return millis / 1000.0


def _env_dht_mode(raw: str, var: str) -> str:
    mode = raw.strip().lower()
    if mode not in DHT_MODES:
        raise ConfigError(var, raw, f"expected one of {', '.join(DHT_MODES)}")
    return mode


def _env_path(raw: str, var: str) -> Path:
    return Path(raw.strip()).expanduser()


def _env_str(raw: str, var: str) -> str:
    return raw.strip()


# env var -> (field, parser). Parsers see the raw string; range checks are in _validate.
_ENV_FIELDS: Final[dict[str, tuple[str, Callable[[str, str], Any]]]] = {
    "P2P_LISTEN_ADDRESSES": ("listen", _env_json_list),
    "P2P_BOOTSTRAP_NODES": ("bootstrap", _env_json_list),
    "P2P_ENABLE_DHT": ("enable_dht", _env_bool),
    "P2P_DHT_MODE": ("dht_mode", _env_dht_mode),
    "P2P_ENABLE_MDNS": ("enable_mdns", _env_bool),
    "P2P_MAX_CONNECTIONS": ("max_connections", _env_int),
    "P2P_CONNECTION_TIMEOUT": ("connection_timeout", _env_millis),
    "P2P_IDENTITY_FILE": ("identity_file", _env_path),
    "P2P_DAEMON_ADDR": ("control_addr", _env_str),
    "P2P_DATA_DIR": ("data_dir", _env_path),
    "P2P_DAEMON": ("daemon", _env_str),
    "P2P_DAEMON_IMAGE": ("daemon_image", _env_str),
    "P2P_HANDLER_ADDR": ("handler_addr", _env_str),
}


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
    connection_timeout: float = 30.0
    """Seconds (the ``P2P_CONNECTION_TIMEOUT`` environment variable is milliseconds)."""
    protocol_prefix: str = DEFAULT_PROTOCOL_PREFIX
    max_message_size: int = 1_048_576
    identity_file: Path | None = None
    p2pd_path: str | None = None
    control_addr: str | None = None
    daemon_start_timeout: float = 10.0
    daemon_stop_grace: float = 3.0
    message_linger: float = 0.5
    """Seconds ``stop()`` keeps connections open after the last SDK message was sent.

    ``/message`` has no acknowledgement (PROTOCOL.md section 2): the sender's daemon has
    written the bytes, but a busy receiver whose daemon has not yet accepted the stream loses
    it when the connection closes. Lingering gives it that time (0: no linger)."""
    restart_daemon: bool = True
    data_dir: Path | None = None
    """Where the node keeps state (the peer cache). None: nothing is written to disk."""
    mdns_interval: float = 10.0
    """Seconds between mDNS queries (RFC 6762 allows no less than 1)."""
    provide_interval: float = 3600.0
    """Seconds between DHT re-provides of a host's model records (PROTOCOL.md section 4)."""
    daemon: DaemonKind = "process"
    """How p2pd is started when not attaching: a local ``process`` or a ``docker`` container."""
    daemon_image: str = DEFAULT_DAEMON_IMAGE
    handler_addr: str | None = None
    """Listen address of the inbound-stream handler, as p2pd dials it. None: a unix socket
    next to a unix control socket, else a TCP port on the address that routes to p2pd."""

    def __post_init__(self) -> None:
        values = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        for key, value in _validate(values, {}).items():
            object.__setattr__(self, key, value)

    @property
    def message_protocol(self) -> str:
        """Protocol id of the Fabstir message protocol, e.g. ``/fabstir-llm/1.0.0/message``."""
        return self.protocol_prefix + "/message"

    @classmethod
    def load(cls, *, env: Mapping[str, str] | None = None, **overrides: Any) -> NodeConfig:
        """Defaults, then ``env`` (``os.environ`` if None), then non-None ``overrides``.

        Unknown override names raise ``TypeError``. An empty list for ``listen`` or
        ``bootstrap`` is applied (it means "none"); ``None`` means "not given". Empty
        environment variables count as unset.
        """
        defaults = _DEFAULTS
        unknown = sorted(set(overrides) - set(defaults))
        if unknown:
            raise TypeError(f"NodeConfig.load() got unknown option(s): {', '.join(unknown)}")

        environ: Mapping[str, str] = os.environ if env is None else env
        values: dict[str, Any] = dict(defaults)
        names: dict[str, str] = {}
        for var, (field_name, parse) in _ENV_FIELDS.items():
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
