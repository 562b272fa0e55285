"""mDNS between hosts: real nodes (p2pd) in network namespaces on a private bridge.

Run as root: ``pytest -m netns -p no:cacheprovider tests/netns``. Frames entering the bridge
are captured (``sniff.py``) and decoded with an encoder-independent parser (``dnswire``), so
the wire format is checked against the libp2p spec, not against zeroconf itself.
"""

from __future__ import annotations

import itertools
import re
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from zeroconf import DNSIncoming

from tests.netns import dnswire
from tests.netns.conftest import Lan, Proc, assert_namespaces_empty

pytestmark = [pytest.mark.netns, pytest.mark.integration]

SERVICE = "_p2p._udp.local"
DISCOVERY_DEADLINE = 10.0
PEER_NAME = re.compile(r"[A-Za-z0-9]{32,63}")


def is_event(kind: str, **fields: Any) -> Callable[[dict[str, Any]], bool]:
    def match(event: dict[str, Any]) -> bool:
        return event.get("event") == kind and all(event.get(k) == v for k, v in fields.items())

    return match


def start_node(spawn: Callable[..., Proc], name: str, ns: str, listen: str, p2pd: str) -> Proc:
    return spawn(
        name, ns, "mdns_node.py", "--listen", listen, "--p2pd", p2pd, "--query-interval", "1.0"
    )


def check_response(msg: dnswire.Message, *, peer_name: str, addrs: list[str], ttl: int) -> None:
    """A libp2p mDNS response: PTR in the answers, TXT dnsaddr strings in the additionals."""
    instance = f"{peer_name}.{SERVICE}"
    assert msg.flags == 0x8400, hex(msg.flags)  # QR | AA, opcode 0, rcode 0
    assert msg.id == 0
    assert msg.questions == []  # rust-libp2p treats a packet with questions as a query
    assert [(r.name, r.type, r.cls, r.ttl, r.target) for r in msg.answers] == [
        (SERVICE, dnswire.TYPE_PTR, 1, ttl, instance)
    ]
    assert msg.authorities == []
    [txt] = msg.additionals
    assert (txt.name, txt.type, txt.cls & 0x7FFF, txt.ttl) == (instance, dnswire.TYPE_TXT, 1, ttl)
    assert txt.strings == [f"dnsaddr={a}".encode() for a in addrs]
    for string in txt.strings:
        assert string.decode().count("/p2p/") == 1


def test_two_hosts_discover_and_connect_loopback_node_silent(
    lan: Lan, spawn: Callable[..., Proc], p2pd_path: str, tmp_path: Path
) -> None:
    a, b, c = lan.hosts["a"], lan.hosts["b"], lan.hosts["c"]
    sniffer = spawn("sniff", lan.bridge_ns, "sniff.py", "--pcap", str(tmp_path / "mdns.pcap"))
    sniffer.wait_for(is_event("ready"), 10)

    nodes = {
        "a": start_node(spawn, "node-a", a.ns, f"/ip4/{a.ip}/tcp/4001", p2pd_path),
        "b": start_node(spawn, "node-b", b.ns, f"/ip4/{b.ip}/tcp/4001", p2pd_path),
        "c": start_node(spawn, "node-c", c.ns, "/ip4/127.0.0.1/tcp/4001", p2pd_path),
    }
    ready = {name: proc.wait_for(is_event("ready"), 30) for name, proc in nodes.items()}
    assert ready["a"]["mdns_interfaces"] == [a.ip]
    assert ready["b"]["mdns_interfaces"] == [b.ip]
    assert ready["c"]["mdns_interfaces"] == []  # loopback only: mDNS stays off

    started = max(ready["a"]["_t"], ready["b"]["_t"])
    for me, other in (("a", "b"), ("b", "a")):
        other_id = ready[other]["peer_id"]
        left = max(0.1, started + DISCOVERY_DEADLINE - time.monotonic())
        found = nodes[me].wait_for(is_event("mdns_peer", peer_id=other_id), left)
        assert found["addrs"] == ready[other]["addrs"]
        left = max(0.1, started + DISCOVERY_DEADLINE - time.monotonic())
        connected = nodes[me].wait_for(is_event("connected", peer_id=other_id), left)
        assert connected["listed"] is True
        print(
            f"{me} discovered {other} after {found['_t'] - started:.2f}s, "
            f"connected after {connected['_t'] - started:.2f}s"
        )

    time.sleep(2.5)  # C gets every chance to (wrongly) say something
    for name, proc in nodes.items():
        assert proc.stop() == 0, f"node {name} did not stop cleanly:\n{proc.stderr()}"
        assert proc.of("stopped"), proc.stderr()
    # A stopped first: its goodbye made B report it gone (B stopped after A).
    gone = nodes["b"].of("mdns_peer_removed")
    assert [e["peer_id"] for e in gone] == [ready["a"]["peer_id"]], nodes["b"].events
    assert not nodes["a"].of("mdns_peer_removed")
    time.sleep(0.5)  # the goodbyes reach the sniffer
    sniffer.stop()
    assert_namespaces_empty(lan)

    c_id = ready["c"]["peer_id"]
    for name in ("a", "b"):
        assert all(e.get("peer_id") != c_id for e in nodes[name].events[1:])
        assert all(
            e["peer_id"] == ready["b" if name == "a" else "a"]["peer_id"]
            for e in nodes[name].of("mdns_peer")
        )

    packets = sniffer.of("packet")
    assert not [p for p in packets if p["src"] == c.ip or p["port"] == "vb3"], "C sent mDNS"
    for name, host in (("a", a), ("b", b)):
        mine = [p for p in packets if p["src"] == host.ip]
        assert mine, f"nothing captured from {name}"
        assert all(
            (p["sport"], p["dst"], p["dport"], p["ttl"]) == (5353, "224.0.0.251", 5353, 255)
            for p in mine
        )
        messages = [dnswire.decode(bytes.fromhex(p["data"])) for p in mine]
        for p in mine:  # zeroconf (what rust/js-like stacks would be) reads them too
            assert DNSIncoming(bytes.fromhex(p["data"])).valid
        queries = [m for m in messages if not m.flags & 0x8000]
        responses = [m for m in messages if m.flags & 0x8000]
        assert queries and responses
        for query in queries:
            assert query.questions == [(SERVICE, dnswire.TYPE_PTR, 1)]
            assert query.answers == query.additionals == []
        live = [m for m in responses if m.answers[0].ttl > 0]
        goodbyes = [m for m in responses if m.answers[0].ttl == 0]
        peer_name = ready[name]["peer_name"]
        assert PEER_NAME.fullmatch(peer_name)
        for msg in live:
            check_response(msg, peer_name=peer_name, addrs=ready[name]["addrs"], ttl=120)
        assert len(goodbyes) == 1
        check_response(goodbyes[0], peer_name=peer_name, addrs=ready[name]["addrs"], ttl=0)
        # Rate limit: never two responses within a second on one link.
        times = [p["t"] for p, m in zip(mine, messages, strict=True) if m.flags & 0x8000]
        gaps = [t2 - t1 for t1, t2 in itertools.pairwise(times)]
        assert min(gaps[:-1], default=1.0) >= 0.9, gaps  # the goodbye may follow sooner


def test_rust_js_style_peers_and_hostile_packets(
    lan: Lan, spawn: Callable[..., Proc], p2pd_path: str
) -> None:
    a, p = lan.hosts["a"], lan.hosts["p"]
    node = start_node(spawn, "node-a", a.ns, f"/ip4/{a.ip}/tcp/4001", p2pd_path)
    ready = node.wait_for(is_event("ready"), 30)
    probe = spawn(
        "probe",
        p.ns,
        "mdns_probe.py",
        "--ip",
        p.ip,
        "--target-ip",
        a.ip,
        "--target-peer",
        ready["peer_id"],
    )

    answer = probe.wait_for(is_event("rust_query_response"), 15)
    assert answer["packet"] is not None, probe.stderr()
    assert answer["latency"] < 2.0  # 20-120 ms jitter, or up to 1 s of rate limit
    msg = answer["packet"]
    assert msg["questions"] == [] and msg["id"] == 0 and msg["flags"] == 0x8400
    instance = f"{ready['peer_name']}.{SERVICE}"
    ptr = {"name": SERVICE, "type": 12, "class": 1, "ttl": 120, "target": instance}
    assert msg["answers"] == [ptr]
    strings = [f"dnsaddr={x}" for x in ready["addrs"]]
    txt = {"name": instance, "type": 16, "class": 0x8001, "ttl": 120, "strings": strings}
    assert msg["additionals"] == [txt]

    fakes = probe.wait_for(is_event("sent"), 10)["peers"]
    assert probe.wait_for(is_event("alive"), 15)["ok"] is True
    probe.wait_for(is_event("goodbye_sent"), 10)
    assert probe.popen.wait(10) == 0, probe.stderr()

    def discovered(peer: str) -> list[str]:
        return list(node.wait_for(is_event("mdns_peer", peer_id=peer), 5)["addrs"])

    assert discovered(fakes["rust"]) == [f"/ip4/{p.ip}/tcp/4001/p2p/{fakes['rust']}"]  # no 127.*
    assert discovered(fakes["js"]) == [f"/ip4/{p.ip}/tcp/4002/p2p/{fakes['js']}"]
    many = discovered(fakes["many"])
    assert many == [f"/ip4/{p.ip}/tcp/{5000 + i}/p2p/{fakes['many']}" for i in range(16)]
    assert discovered(fakes["mixed"]) == [f"/ip4/{p.ip}/tcp/4004/p2p/{fakes['mixed']}"]
    reported = {e["peer_id"] for e in node.of("mdns_peer")}
    assert fakes["hijack"] not in reported  # claimed the node's own instance name
    assert ready["peer_id"] not in reported  # its own id under another name

    node.signal(signal.SIGUSR1)
    peers = node.wait_for(is_event("peers"), 10)["peers"]
    assert fakes["rust"] not in peers  # said goodbye
    node.wait_for(is_event("mdns_peer_removed", peer_id=fakes["rust"]), 5)  # and was reported
    assert {e["peer_id"] for e in node.of("mdns_peer_removed")} == {fakes["rust"]}
    assert set(peers) == {fakes["js"], fakes["many"], fakes["mixed"]}
    assert len(peers[fakes["many"]]) == 16

    assert node.stop() == 0, node.stderr()
    assert_namespaces_empty(lan)
