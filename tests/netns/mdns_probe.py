"""Play rust-libp2p, js-libp2p and a hostile host against a node, from a test namespace.

    ip netns exec fabns-p-XXXX python tests/netns/mdns_probe.py \\
        --ip 10.77.3.4 --target-ip 10.77.3.1 --target-peer 12D3KooW...

Packets are built by :mod:`dnswire` exactly as rust-libp2p's and js-libp2p's encoders build
them, sent like rust-libp2p does (from an ephemeral port, to 224.0.0.251:5353), and the
node's responses are decoded section by section. JSON lines on stdout:

    {"event": "rust_query_response", "latency": s, "packet": {...}}   the node's answer
    {"event": "sent", "peers": {"rust": id, "js": id, ...}}            fake peers announced
    {"event": "alive", "ok": true}        the node still answers after the hostile packets
    {"event": "goodbye_sent", "peer_id": id}
"""

from __future__ import annotations

import argparse
import json
import os
import select
import socket
import sys
import time
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from tests.netns import dnswire

GROUP = "224.0.0.251"
PORT = 5353


def emit(event: str, **fields: Any) -> None:
    print(json.dumps({"event": event, **fields}), flush=True)


def open_sockets(ip: str) -> tuple[socket.socket, socket.socket]:
    """(multicast listener on 5353 for this interface, rust-style ephemeral sender)."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.setsockopt(socket.IPPROTO_IP, 49, 0)  # IP_MULTICAST_ALL off
    listener.bind((GROUP, PORT))
    listener.setsockopt(
        socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, socket.inet_aton(GROUP) + socket.inet_aton(ip)
    )
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sender.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton(ip))
    sender.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, 255)
    sender.bind((ip, 0))
    return listener, sender


def wait_response(
    socks: list[socket.socket], target_ip: str, timeout: float
) -> dnswire.Message | None:
    deadline = time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0:
        readable, _, _ = select.select(socks, [], [], left)
        for sock in readable:
            data, (src, _port) = sock.recvfrom(9000)
            if src != target_ip:
                continue
            msg = dnswire.decode(data)
            if msg.flags & 0x8000 and any(r.type == dnswire.TYPE_PTR for r in msg.answers):
                return msg
    return None


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--ip", required=True)
    parser.add_argument("--target-ip", required=True)
    parser.add_argument("--target-peer", required=True)
    args = parser.parse_args()
    ip = args.ip
    listener, sender = open_sockets(ip)

    def send(data: bytes) -> None:
        sender.sendto(data, (GROUP, PORT))

    # 1. Ask like rust-libp2p does (ephemeral source port, random id, QM question).
    start = time.monotonic()
    send(dnswire.rust_query())
    msg = wait_response([listener, sender], args.target_ip, 5.0)
    if msg is None:
        emit("rust_query_response", latency=None, packet=None)
        return 1
    emit("rust_query_response", latency=time.monotonic() - start, packet=msg.as_json())
    target_instance = next(r.target for r in msg.answers if r.target is not None)

    # 2. Announce fake peers the way rust- and js-libp2p do, plus hostile packets.
    peers = {name: dnswire.fake_peer_id() for name in ("rust", "js", "many", "mixed", "hijack")}
    rust, js, many, mixed = peers["rust"], peers["js"], peers["many"], peers["mixed"]
    send(
        dnswire.rust_response(
            "R" * 40,
            [f"/ip4/{ip}/tcp/4001/p2p/{rust}", f"/ip4/127.0.0.1/tcp/4001/p2p/{rust}"],
        )
    )
    send(dnswire.js_response("J" * 33, [f"/ip4/{ip}/tcp/4002/p2p/{js}"]))
    send(
        dnswire.rust_response("M" * 50, [f"/ip4/{ip}/tcp/{5000 + i}/p2p/{many}" for i in range(40)])
    )
    # Malformed strings around one good address: only the good one may be used.
    instance = f"{'X' * 36}.{dnswire.SERVICE}"
    bad = [
        b"dnsaddr=not-a-multiaddr",
        f"dnsaddr=/ip4/{ip}/tcp/1".encode(),  # no /p2p/<id>
        f"dnsaddr=/ip4/{ip}/tcp/2/p2p/{mixed}/p2p/{mixed}".encode(),  # /p2p twice
        f"dnsaddr=/ip4/0.0.0.0/tcp/3/p2p/{mixed}".encode(),
        b"dnsaddr=/ip4/\xff\xfe/tcp/4",
        b"foo=bar",
        f"dnsaddr=/ip4/{ip}/tcp/4004/p2p/{mixed}".encode(),
    ]
    packet = (
        dnswire.header(0, 0x8400, 0, 1, 0, 1)
        + dnswire.record(dnswire.SERVICE, dnswire.TYPE_PTR, 1, 120, dnswire.encode_name(instance))
        + dnswire.record(instance, dnswire.TYPE_TXT, 1, 120, dnswire.txt_rdata(bad))
    )
    send(packet)
    # The node's own peer id under another name, and another peer under the node's name.
    send(dnswire.rust_response("S" * 34, [f"/ip4/{ip}/tcp/4003/p2p/{args.target_peer}"]))
    hijack = peers["hijack"]
    send(
        dnswire.header(0, 0x8400, 0, 1, 0, 1)
        + dnswire.record(
            dnswire.SERVICE, dnswire.TYPE_PTR, 1, 120, dnswire.encode_name(target_instance)
        )
        + dnswire.record(
            target_instance,
            dnswire.TYPE_TXT,
            1,
            120,
            dnswire.txt_rdata([f"dnsaddr=/ip4/{ip}/tcp/4005/p2p/{hijack}".encode()]),
        )
    )
    # Garbage: short, random, a compression loop, a huge record count.
    send(b"\xff" * 7)
    send(os.urandom(300))
    send(dnswire.header(0, 0x8400, 0, 1, 0, 0) + b"\xc0\x0c" + b"\x00" * 10)
    send(dnswire.header(0, 0x8400, 0, 65535, 65535, 65535))
    emit("sent", peers=peers)

    # 3. Still answering?
    time.sleep(1.5)
    send(dnswire.rust_query())
    emit("alive", ok=wait_response([listener, sender], args.target_ip, 5.0) is not None)

    # 4. The rust peer leaves (goodbye: TTL 0).
    send(dnswire.rust_response("R" * 40, [f"/ip4/{ip}/tcp/4001/p2p/{rust}"], ttl=0))
    emit("goodbye_sent", peer_id=rust)
    return 0


if __name__ == "__main__":
    sys.exit(main())
