"""Is this node reachable from the internet, and how: a first-class fact.

Read from what p2pd knows: its Prometheus endpoint (``-metricsAddr``: AutoNAT's verdict,
relay reservations, hole punches) and identify (its addresses: direct, mapped by the router,
relayed ``/p2p-circuit``). Parsing and judging are pure (:func:`parse_metrics`,
:func:`assess`); only :func:`fetch_metrics` and :func:`reachability_of` do I/O.

``status``:

* ``public``: AutoNAT (or ``force_reachability``) says others can dial us directly;
* ``private``: behind NAT or a firewall; reachable only through ``relayed_addrs`` (if any);
* ``unknown``: AutoNAT has no verdict (no peer ran ``-autonat`` for us, every address is
  private such as 10/8, or no metrics endpoint to ask).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final, Literal

import httpx
from prometheus_client.parser import text_string_to_metric_families

from fabstir_sidecar.core.circuit import is_circuit, with_circuits
from fabstir_sidecar.core.settings import NodeConfig

if TYPE_CHECKING:
    from fabstir_sidecar.node.manager import DiscoveryManager

__all__ = [
    "MetricsSnapshot",
    "Reachability",
    "ReachabilityStatus",
    "assess",
    "fetch_metrics",
    "parse_metrics",
    "reachability_of",
]

ReachabilityStatus = Literal["public", "private", "unknown"]
# go-libp2p network.Reachability as exported by libp2p_autonat_reachability_status
_AUTONAT_STATUS: Final[dict[int, ReachabilityStatus]] = {0: "unknown", 1: "public", 2: "private"}


@dataclass(frozen=True, slots=True)
class MetricsSnapshot:
    """The few p2pd metrics reachability needs (absent metrics read as 0)."""

    autonat_status: ReachabilityStatus = "unknown"
    autonat_confidence: int = 0
    reservations_opened: int = 0
    reservations_closed: int = 0
    relay_addresses: int = 0
    holepunch_successes: int = 0
    holepunch_failures: int = 0
    relay_service_active: bool = False
    relayed_bytes: int = 0

    @property
    def reservations(self) -> int:
        """Relay reservations currently held."""
        return max(0, self.reservations_opened - self.reservations_closed)


def _samples(text: str) -> dict[str, list[tuple[Mapping[str, str], float]]]:
    out: dict[str, list[tuple[Mapping[str, str], float]]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out.setdefault(sample.name, []).append((sample.labels, float(sample.value)))
    return out


def parse_metrics(text: str) -> MetricsSnapshot:
    """A :class:`MetricsSnapshot` from p2pd's Prometheus text (``GET /metrics``)."""
    samples = _samples(text)

    def total(name: str, **labels: str) -> int:
        return int(
            sum(
                value
                for got, value in samples.get(name, [])
                if all(got.get(k) == v for k, v in labels.items())
            )
        )

    holepunch = "libp2p_holepunch_outcomes_total"
    return MetricsSnapshot(
        autonat_status=_AUTONAT_STATUS.get(total("libp2p_autonat_reachability_status"), "unknown"),
        autonat_confidence=total("libp2p_autonat_reachability_status_confidence"),
        reservations_opened=total("libp2p_autorelay_reservations_opened_total"),
        reservations_closed=total("libp2p_autorelay_reservations_closed_total"),
        relay_addresses=total("libp2p_autorelay_relay_addresses_count"),
        holepunch_successes=total(holepunch, outcome="success"),
        holepunch_failures=total(holepunch, outcome="failed"),
        relay_service_active=total("libp2p_relaysvc_status") == 1,
        relayed_bytes=total("libp2p_relaysvc_data_transferred_bytes_total"),
    )


@dataclass(frozen=True, slots=True)
class Reachability:
    """What this node knows about being reachable (see the module docstring)."""

    status: ReachabilityStatus
    source: Literal["forced", "autonat", "none"]
    """Where ``status`` comes from: configuration, AutoNAT, or nothing known."""
    direct_addrs: tuple[str, ...] = ()
    mapped_addrs: tuple[str, ...] = ()
    """Public addresses that are not a listen address: a router's port mapping (UPnP /
    NAT-PMP) or an address peers observed, which p2pd announces."""
    relayed_addrs: tuple[str, ...] = ()
    """``/p2p-circuit`` addresses: advertised by p2pd, or built from our relays while the
    relay client holds a reservation."""
    reservations: int = 0
    holepunch_successes: int = 0
    relay_service: bool = True
    """Whether this node relays circuits for others (always, with p2pd 1.1.12)."""
    metrics: MetricsSnapshot | None = None
    notes: tuple[str, ...] = field(default=())

    def to_json(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "source": self.source,
            "direct_addrs": list(self.direct_addrs),
            "mapped_addrs": list(self.mapped_addrs),
            "relayed_addrs": list(self.relayed_addrs),
            "reservations": self.reservations,
            "holepunch_successes": self.holepunch_successes,
            "relay_service": self.relay_service,
            "notes": list(self.notes),
        }


def _ip_of(addr: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    parts = addr.split("/")
    if len(parts) > 2 and parts[1] in ("ip4", "ip6"):
        try:
            return ipaddress.ip_address(parts[2])
        except ValueError:
            return None
    return None


def _is_public(addr: str) -> bool:
    ip = _ip_of(addr)
    return ip is not None and ip.is_global


def assess(
    cfg: NodeConfig,
    addrs: Sequence[str],
    listen: Sequence[str],
    metrics: MetricsSnapshot | None,
    peer_id: str,
) -> Reachability:
    """Judge reachability from the configuration, our addresses and the metrics (pure).

    ``addrs`` are identify's (with or without ``/p2p/<peer_id>``), ``listen`` the configured
    listen addresses (a public address on none of their IPs is a mapped or observed one).
    """
    suffix = f"/p2p/{peer_id}"
    bare = [a.removesuffix(suffix) for a in addrs]
    direct = tuple(a for a in bare if not is_circuit(a))
    listen_ips = {_ip_of(a) for a in listen}
    mapped: tuple[str, ...] = ()
    if all(ip is not None and not ip.is_unspecified for ip in listen_ips):
        # (listening on 0.0.0.0, an interface's own public address looks the same: unknown)
        mapped = tuple(a for a in direct if _is_public(a) and _ip_of(a) not in listen_ips)
    relayed = [f"{a}{suffix}" for a in bare if is_circuit(a)]
    reservations = metrics.reservations if metrics else 0
    if cfg.relay_client and reservations and not relayed:
        # go-libp2p reserved but advertises nothing (only private addresses): build them.
        relayed = with_circuits([], cfg.relay_addrs, peer_id)
    notes: list[str] = []
    if cfg.force_reachability != "auto":
        status: ReachabilityStatus = cfg.force_reachability
        source: Literal["forced", "autonat", "none"] = "forced"
    elif metrics is not None and metrics.autonat_status != "unknown":
        status, source = metrics.autonat_status, "autonat"
    else:
        status, source = "unknown", "none"
        if metrics is None:
            notes.append("no metrics endpoint: AutoNAT's verdict cannot be read")
        elif not any(_is_public(a) for a in direct):
            notes.append(
                "every address is private (e.g. 10/8, 192.168/16): AutoNAT cannot conclude; "
                "set force_reachability if you know the answer"
            )
        else:
            notes.append("AutoNAT has no verdict yet: it needs peers running the AutoNAT service")
    if not cfg.relay_service:
        notes.append("relay_service is off, but p2pd 1.1.12 relays for others anyway")
    if status == "private" and not relayed:
        notes.append(
            "unreachable from outside: open/forward a port (then announce it), enable UPnP / "
            "NAT-PMP (enable_nat_portmap), or enable the relay client (relay_client)"
        )
    return Reachability(
        status=status,
        source=source,
        direct_addrs=direct,
        mapped_addrs=mapped,
        relayed_addrs=tuple(dict.fromkeys(relayed)),
        reservations=reservations,
        holepunch_successes=metrics.holepunch_successes if metrics else 0,
        relay_service=True,  # every p2pd 1.1.12 relays, whatever it is told (docs/nat.md)
        metrics=metrics,
        notes=tuple(notes),
    )


async def fetch_metrics(addr: str, *, timeout: float = 3.0) -> str:
    """``GET http://<addr>/metrics`` (p2pd's Prometheus endpoint). Raises ``httpx.HTTPError``."""
    async with httpx.AsyncClient(timeout=timeout, trust_env=False) as client:
        response = await client.get(f"http://{addr}/metrics")
        response.raise_for_status()
        return response.text


Fetcher = Callable[[str], Any]


async def reachability_of(node: DiscoveryManager, *, fetch: Fetcher | None = None) -> Reachability:
    """The running ``node``'s :class:`Reachability`. ``fetch(addr)`` (awaitable, returns the
    metrics text) replaces :func:`fetch_metrics`, e.g. to read a daemon in a namespace."""
    peer_id, addrs = await node.control.identify()
    addr = node.metrics_addr
    metrics = None
    if addr is not None:
        try:
            text = await (fetch or fetch_metrics)(addr)
        except (httpx.HTTPError, OSError):
            text = None
        metrics = parse_metrics(text) if text is not None else None
    return assess(node.config, addrs, node.config.listen, metrics, str(peer_id))
