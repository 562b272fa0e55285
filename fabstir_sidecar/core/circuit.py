"""Circuit-relay addresses: build them, tell them apart, order what to dial.

A host behind NAT is reached through a relay R it holds a reservation on::

    /ip4/<R>/tcp/<port>/p2p/<R id>/p2p-circuit/p2p/<H id>

go-libp2p does not always advertise that address (with only private addresses, e.g. in
10/8, it reserves when forced private but advertises nothing), so both sides build it: the
host publishes it in its status, and a dialer adds it for its own relays (the bootstrap
nodes by default). Direct addresses come first; go-libp2p also delays relayed dials while
direct ones are in flight, so the extra addresses cost nothing when a direct one works.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

__all__ = ["CIRCUIT", "circuit_via", "dial_order", "is_circuit", "with_circuits"]

CIRCUIT = "/p2p-circuit"


def is_circuit(addr: str) -> bool:
    """True for a relayed address (``.../p2p-circuit...``)."""
    return f"{CIRCUIT}/" in addr + "/"


def circuit_via(relay: str, peer_id: str | None = None) -> str:
    """The address of ``peer_id`` through ``relay`` (a full multiaddr ending in
    ``/p2p/<relay id>``); without ``peer_id`` the bare form p2pd's CONNECT takes."""
    base = relay.rstrip("/") + CIRCUIT
    return base if peer_id is None else f"{base}/p2p/{peer_id}"


def _relay_of(addr: str) -> str:
    return addr.split(CIRCUIT, 1)[0]


def with_circuits(addrs: Sequence[str], relays: Iterable[str], peer_id: str) -> list[str]:
    """``addrs`` (full, ending in ``/p2p/<peer_id>``) plus ``peer_id``'s circuit address via
    each relay not already present; no duplicates, original order kept."""
    out = list(dict.fromkeys(addrs))
    present = {_relay_of(a) for a in out if is_circuit(a)}
    for relay in relays:
        if relay.rstrip("/") not in present:
            out.append(circuit_via(relay, peer_id))
            present.add(relay.rstrip("/"))
    return out


def dial_order(addrs: Sequence[str], relays: Iterable[str], peer_id: str) -> list[str]:
    """What to pass to CONNECT for ``peer_id``: direct addresses first, then the circuits
    it advertised, then circuits through ``relays`` (never through ``peer_id`` itself).
    Addresses may end in ``/p2p/<peer_id>``; CONNECT wants them without it."""
    suffix = f"/p2p/{peer_id}"
    bare = [a[: -len(suffix)] if a.endswith(suffix) else a for a in dict.fromkeys(addrs)]
    direct = [a for a in bare if not is_circuit(a)]
    relayed = [a for a in bare if is_circuit(a)]
    present = {_relay_of(a) for a in relayed}
    for relay in relays:
        relay = relay.rstrip("/")
        if relay not in present and not relay.endswith(suffix):
            relayed.append(circuit_via(relay))
            present.add(relay)
    return direct + relayed
