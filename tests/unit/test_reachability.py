"""Reachability: parsing p2pd's metrics and judging public / private / unknown (pure)."""

from __future__ import annotations

from fabstir_sidecar.core.circuit import circuit_via, dial_order, is_circuit, with_circuits
from fabstir_sidecar.core.settings import NodeConfig
from fabstir_sidecar.node.reachability import MetricsSnapshot, assess, parse_metrics

H = "12D3KooWHsHHcDmBi73RNPUqSZikF87QD8ZhAoHeuSq8YmRzXn5g"
R = "12D3KooWD3eckifWpRn9wQpMG9R9hX3sD158z7EqHWmweQAJU5SA"
RELAY = f"/ip4/11.0.0.1/tcp/4001/p2p/{R}"

METRICS = """\
# HELP libp2p_autonat_reachability_status Current node reachability
# TYPE libp2p_autonat_reachability_status gauge
libp2p_autonat_reachability_status 2
libp2p_autonat_reachability_status_confidence 3
# TYPE libp2p_autorelay_reservations_opened_total counter
libp2p_autorelay_reservations_opened_total 2
libp2p_autorelay_reservations_closed_total 1
libp2p_autorelay_relay_addresses_count 1
# TYPE libp2p_holepunch_outcomes_total counter
libp2p_holepunch_outcomes_total{outcome="success",side="initiator",transport="tcp"} 1
libp2p_holepunch_outcomes_total{outcome="success",side="receiver",transport="quic-v1"} 2
libp2p_holepunch_outcomes_total{outcome="failed",side="initiator",transport="tcp"} 4
libp2p_relaysvc_status 1
libp2p_relaysvc_data_transferred_bytes_total 131072
"""


def test_parse_metrics() -> None:
    snap = parse_metrics(METRICS)
    assert snap.autonat_status == "private" and snap.autonat_confidence == 3
    assert (snap.reservations_opened, snap.reservations_closed, snap.reservations) == (2, 1, 1)
    assert (snap.holepunch_successes, snap.holepunch_failures) == (3, 4)
    assert snap.relay_service_active and snap.relayed_bytes == 131072
    assert parse_metrics("") == MetricsSnapshot()


def test_forced_private_with_reservation_builds_circuit_addresses() -> None:
    cfg = NodeConfig(
        bootstrap=(RELAY,), relay_client=True, force_reachability="private", enable_dht=True
    )
    got = assess(
        cfg,
        ["/ip4/192.168.1.2/tcp/4001"],
        ["/ip4/192.168.1.2/tcp/4001"],
        MetricsSnapshot(reservations_opened=1),
        H,
    )
    assert (got.status, got.source) == ("private", "forced")
    assert got.relayed_addrs == (f"{RELAY}/p2p-circuit/p2p/{H}",)
    assert got.mapped_addrs == ()
    assert not any("unreachable" in n for n in got.notes)


def test_private_without_relay_says_what_to_do() -> None:
    got = assess(
        NodeConfig(),
        ["/ip4/192.168.1.2/tcp/4001"],
        ["/ip4/192.168.1.2/tcp/0"],
        MetricsSnapshot(autonat_status="private"),
        H,
    )
    assert (got.status, got.source) == ("private", "autonat")
    assert any("enable_nat_portmap" in n and "relay_client" in n for n in got.notes)


def test_mapped_port_is_a_public_address_on_no_listen_ip() -> None:
    addrs = ["/ip4/192.168.1.2/tcp/4001", f"/ip4/11.0.0.11/tcp/4001/p2p/{H}"]
    got = assess(
        NodeConfig(),
        addrs,
        ["/ip4/192.168.1.2/tcp/4001"],
        MetricsSnapshot(autonat_status="public"),
        H,
    )
    assert got.status == "public"
    assert got.mapped_addrs == ("/ip4/11.0.0.11/tcp/4001",)
    # listening on 0.0.0.0 an interface's own public address cannot be told apart
    assert assess(NodeConfig(), addrs, ["/ip4/0.0.0.0/tcp/4001"], None, H).mapped_addrs == ()


def test_unknown_explains_why() -> None:
    only_private = assess(NodeConfig(), ["/ip4/10.1.2.3/tcp/1"], [], MetricsSnapshot(), H)
    assert only_private.status == "unknown"
    assert any("private" in n for n in only_private.notes)
    assert any("metrics" in n for n in assess(NodeConfig(), [], [], None, H).notes)


def test_advertised_circuit_addresses_kept() -> None:
    circuit = f"{RELAY}/p2p-circuit"
    got = assess(NodeConfig(), [circuit], [], MetricsSnapshot(autonat_status="private"), H)
    assert got.relayed_addrs == (f"{circuit}/p2p/{H}",)
    assert got.to_json()["relayed_addrs"] == [f"{circuit}/p2p/{H}"]


# ----------------------------------------------------------------- core/circuit.py


def test_circuit_helpers() -> None:
    assert circuit_via(RELAY, H) == f"{RELAY}/p2p-circuit/p2p/{H}"
    assert circuit_via(RELAY) == f"{RELAY}/p2p-circuit"
    assert is_circuit(f"{RELAY}/p2p-circuit") and not is_circuit(RELAY)
    own = [f"/ip4/192.168.1.2/tcp/4001/p2p/{H}"]
    assert with_circuits(own, [RELAY, RELAY], H) == [*own, f"{RELAY}/p2p-circuit/p2p/{H}"]
    assert with_circuits([*own, f"{RELAY}/p2p-circuit/p2p/{H}"], [RELAY], H) == [
        *own,
        f"{RELAY}/p2p-circuit/p2p/{H}",
    ]


def test_dial_order_direct_first_then_advertised_then_built() -> None:
    other = f"/ip4/11.0.0.9/tcp/4001/p2p/{H[:-1]}h"
    addrs = [f"{other}/p2p-circuit/p2p/{H}", f"/ip4/192.168.1.2/tcp/4001/p2p/{H}"]
    assert dial_order(addrs, [RELAY], H) == [
        "/ip4/192.168.1.2/tcp/4001",
        f"{other}/p2p-circuit",
        f"{RELAY}/p2p-circuit",
    ]
    # never a circuit through the peer itself (the bootstrap node as a candidate)
    assert dial_order([RELAY], [RELAY], R) == ["/ip4/11.0.0.1/tcp/4001"]
