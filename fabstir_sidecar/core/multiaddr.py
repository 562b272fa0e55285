"""Multiaddr helpers: parse with a clear error, split off ``/p2p/<id>``, check roles.

Every multiaddr that enters the package as text (options, environment, CLI, HTTP, peers'
messages) goes through here, so errors are alike everywhere: an
:class:`~fabstir_sidecar.core.errors.InvalidMultiaddrError` naming the option.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from multiaddr import Multiaddr

from fabstir_sidecar.core.errors import ConfigError, InvalidMultiaddrError
from fabstir_sidecar.core.peer_id import PeerId

__all__ = [
    "PeerAddrs",
    "check_bootstrap_addr",
    "check_control_addr",
    "check_listen_addr",
    "parse_multiaddr",
    "split_peer_multiaddr",
    "strip_peer",
    "tcp_endpoint",
    "tcp_host_port",
    "tcp_listen_port",
    "with_peer",
]

_HOST_PROTOCOLS: Final = frozenset({"ip4", "ip6", "dns", "dns4", "dns6"})
_TRANSPORT_PROTOCOLS: Final = frozenset({"tcp", "udp"})


@dataclass(frozen=True, slots=True)
class PeerAddrs:
    """A peer and the addresses it can be dialed at (without ``/p2p/<id>``)."""

    peer_id: PeerId
    addrs: tuple[str, ...] = ()


def tcp_endpoint(addr: str, *, exact: bool = False, names: bool = True) -> tuple[str, int] | None:
    """``(host, port)`` of a TCP multiaddr: ``/ip4|ip6/H/tcp/P`` (and ``/dns*/H/tcp/P`` with
    ``names``), with what is layered on TCP after it (``/ws``, ``/tls``; not a relay circuit),
    or nothing after it when ``exact``. None for any other shape."""
    try:
        parts = str(Multiaddr(addr)).strip("/").split("/")
    except Exception:  # third-party boundary: any parse failure means "not this shape"
        return None
    hosts = _HOST_PROTOCOLS if names else ("ip4", "ip6")
    if len(parts) < 4 or parts[0] not in hosts or parts[2] != "tcp" or not parts[3].isdigit():
        return None
    rest = parts[4:]
    if (exact and rest) or any(part in ("udp", "p2p-circuit") for part in rest):
        return None
    return parts[1], int(parts[3])


def tcp_host_port(addr: str) -> tuple[str, int] | None:
    """``("1.2.3.4", 5)`` for exactly ``/ip4/1.2.3.4/tcp/5`` (or ``/ip6/...``), the shape of a
    control or handler address; None for other shapes."""
    return tcp_endpoint(addr, exact=True, names=False)


def tcp_listen_port(addr: str) -> tuple[str, int] | None:
    """``(ip, port)`` of a TCP listen multiaddr with a fixed port (``/ip4/.../tcp/N`` and
    what is layered on TCP, such as ``/ws``); None for port 0, UDP and names."""
    endpoint = tcp_endpoint(addr, names=False)
    return endpoint if endpoint and endpoint[1] else None


def strip_peer(addr: str) -> str:
    """``addr`` without a trailing ``/p2p/<id>`` (unchanged if it has none)."""
    head, sep, _ = addr.rpartition("/p2p/")
    return head if sep and head else addr


def with_peer(addr: str, peer_id: str) -> str:
    """``addr`` ending in ``/p2p/<peer_id>`` (added once)."""
    return addr if addr.endswith(f"/p2p/{peer_id}") else f"{addr}/p2p/{peer_id}"


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


def split_peer_multiaddr(value: str, *, name: str) -> tuple[str, PeerId]:
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
        return address, PeerId.parse(peer_id, name=name)
    except ConfigError as exc:
        raise InvalidMultiaddrError(name, value, exc.reason) from exc


def check_listen_addr(value: str, *, name: str) -> str:
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


def check_bootstrap_addr(value: str, *, name: str) -> str:
    address, peer_id = split_peer_multiaddr(value, name=name)
    return f"{address}/p2p/{peer_id}"


def check_control_addr(value: str, *, name: str) -> str:
    addr = parse_multiaddr(value, name=name)
    protos = _protocol_names(addr)
    if protos != ["unix"] and protos not in (["ip4", "tcp"], ["ip6", "tcp"]):
        raise InvalidMultiaddrError(
            name, value, "expected a p2pd control address /unix/<path> or /ip4/<ip>/tcp/<port>"
        )
    return str(addr)
