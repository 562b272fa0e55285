"""The diagnose report's data: its JSON document (docs/cli.md) and its verdict."""

from __future__ import annotations

from fabstir_sidecar.node.manager import BootstrapResult
from fabstir_sidecar.tools.diagnose import DhtReport, DiagnoseReport

PEER = "12D3KooWD3M7uy3eRq9ZYkB5fxRQA7nd6h2E8dXxLuU3qjFgZUNj"


def report(*bootstrap: BootstrapResult, dht: DhtReport | None = None) -> DiagnoseReport:
    return DiagnoseReport(
        running=True,
        p2pd="/bin/p2pd",
        peer_id=PEER,
        listen_addrs=(f"/ip4/127.0.0.1/tcp/4001/p2p/{PEER}",),
        announce=("/ip4/203.0.113.7/tcp/4001",),
        connected_peers=(PEER,),
        bootstrap=bootstrap,
        dht=dht or DhtReport(enabled=True, mode="auto", routing_table_peers=1),
    )


def test_the_json_document_has_the_documented_keys_in_order() -> None:
    doc = report(BootstrapResult("/ip4/10.0.0.5/tcp/4001/p2p/" + PEER, PEER)).to_json()
    assert list(doc) == [
        "running",
        "p2pd",
        "peer_id",
        "listen_addrs",
        "announce",
        "connected_peers",
        "bootstrap",
        "dht",
        "reachability",
    ]
    assert doc["bootstrap"] == [
        {"address": "/ip4/10.0.0.5/tcp/4001/p2p/" + PEER, "reachable": True, "error": None}
    ]
    assert doc["listen_addrs"] == [f"/ip4/127.0.0.1/tcp/4001/p2p/{PEER}"]
    assert doc["dht"] == {"enabled": True, "mode": "auto", "routing_table_peers": 1}


def test_ok_only_when_every_bootstrap_peer_was_reachable() -> None:
    good = BootstrapResult("/a", PEER)
    bad = BootstrapResult("/b", PEER, error="connection refused")
    assert report().ok and report(good).ok
    assert not report(good, bad).ok
    assert report(bad).to_json()["bootstrap"][0]["reachable"] is False


def test_dht_report_shapes() -> None:
    assert DhtReport(False, "auto").to_json() == {"enabled": False, "mode": "auto"}
    failed = DhtReport(True, "server", routing_table_peers=0, error="boom")
    assert failed.to_json() == {
        "enabled": True,
        "mode": "server",
        "routing_table_peers": 0,
        "error": "boom",
    }
