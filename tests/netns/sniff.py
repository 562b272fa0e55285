"""Capture mDNS frames entering a test bridge (no tcpdump needed): run in the bridge namespace.

    ip netns exec fabns-br-XXXX python tests/netns/sniff.py --pcap /tmp/x.pcap

Listens with an AF_PACKET socket on every interface of the (test-created) namespace and
reports each UDP frame to or from port 5353 that a host sent into the bridge (ingress on a
``vb*`` port) as one JSON line: ``{"event": "packet", "port": "vb1", "src": "10.77.3.1",
"sport": 5353, "dst": "224.0.0.251", "dport": 5353, "ttl": 255, "t": ..., "data": "<hex>"}``.
Prints ``{"event": "ready"}`` first; with ``--pcap`` also writes a pcap file. Exits on SIGTERM.
"""

from __future__ import annotations

import argparse
import json
import signal
import socket
import struct
import sys
import time
from typing import BinaryIO

ETH_P_ALL = 0x0003
PACKET_OUTGOING = 4
MDNS_PORT = 5353


def _stop(_signum: int, _frame: object) -> None:
    raise SystemExit(0)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pcap", default=None)
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, _stop)
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    pcap: BinaryIO | None = open(args.pcap, "wb") if args.pcap else None  # noqa: SIM115
    if pcap:
        pcap.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
        pcap.flush()
    print(json.dumps({"event": "ready"}), flush=True)
    try:
        while True:
            frame, (ifname, _proto, pkttype, _hatype, _addr) = sock.recvfrom(65535)
            if pkttype == PACKET_OUTGOING or not ifname.startswith("vb"):
                continue
            if len(frame) < 42 or frame[12:14] != b"\x08\x00":
                continue
            ip = frame[14:]
            ihl = (ip[0] & 0x0F) * 4
            if ip[9] != 17:  # UDP
                continue
            (total,) = struct.unpack_from("!H", ip, 2)  # frames may carry Ethernet padding
            sport, dport = struct.unpack_from("!HH", ip, ihl)
            if MDNS_PORT not in (sport, dport):
                continue
            now = time.time()
            if pcap:
                sec, usec = int(now), int((now % 1) * 1e6)
                pcap.write(struct.pack("<IIII", sec, usec, len(frame), len(frame)) + frame)
                pcap.flush()
            event = {
                "event": "packet",
                "port": ifname,
                "src": socket.inet_ntoa(ip[12:16]),
                "dst": socket.inet_ntoa(ip[16:20]),
                "sport": sport,
                "dport": dport,
                "ttl": ip[8],
                "t": now,
                "data": ip[ihl + 8 : total].hex(),
            }
            print(json.dumps(event), flush=True)
    finally:
        if pcap:
            pcap.close()


if __name__ == "__main__":
    sys.exit(main())
