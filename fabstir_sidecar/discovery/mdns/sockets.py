"""The mDNS UDP sockets: one per interface, hearing and speaking only there.

Each socket is bound to the mDNS group with ``IP_MULTICAST_ALL=0`` (Linux) so it hears only
its own interface, and sends only there (``IP_MULTICAST_IF``); nothing is sent anywhere
else. IPv4 only (the spec's ``224.0.0.251``).
"""

from __future__ import annotations

import contextlib
import logging
import socket
import sys
from collections.abc import Callable
from typing import Final, NoReturn

try:  # anyio >= 4.7
    from anyio import wait_readable as _wait_readable
except ImportError:  # pragma: no cover - anyio 4.4-4.6
    from anyio import wait_socket_readable as _wait_readable  # type: ignore[assignment,no-redef,unused-ignore]

__all__ = ["MDNS_GROUP", "MDNS_PORT", "open_socket", "receive_forever", "send"]

log = logging.getLogger(__name__)

MDNS_GROUP: Final = "224.0.0.251"
MDNS_PORT: Final = 5353

_MAX_PACKET: Final = 9000  # RFC 6762 section 17
_RECV_BATCH: Final = 64

# Linux: deliver to a socket only the groups it joined itself, on the interface it joined
# them on (otherwise every socket bound to 5353 hears every interface's mDNS).
_IP_MULTICAST_ALL: Final = int(getattr(socket, "IP_MULTICAST_ALL", 49))
_IS_LINUX: Final = sys.platform.startswith("linux")


def open_socket(ip: str) -> socket.socket:
    """A UDP socket that hears and speaks mDNS on the interface with address ``ip`` only."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_UDP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if hasattr(socket, "SO_REUSEPORT"):
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if _IS_LINUX:
            sock.setsockopt(socket.IPPROTO_IP, _IP_MULTICAST_ALL, 0)
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, 255)
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, 1)  # other local nodes
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton(ip))
        # Bound to the group itself, the socket gets no unicast at all (we never ask for it).
        sock.bind((MDNS_GROUP if _IS_LINUX else "", MDNS_PORT))
        membership = socket.inet_aton(MDNS_GROUP) + socket.inet_aton(ip)
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, membership)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


def send(sock: socket.socket, ip: str, packets: list[bytes]) -> None:
    """Multicast ``packets`` to the mDNS group; failures are logged (mDNS is best effort)."""
    for data in packets:
        try:
            sock.sendto(data, (MDNS_GROUP, MDNS_PORT))
        except OSError as exc:  # interface down, buffer full
            log.debug("mDNS send failed", extra={"interface": ip, "error": str(exc)})


async def receive_forever(
    sock: socket.socket, ip: str, handle: Callable[[bytes, tuple[str, int]], None]
) -> NoReturn:
    """Pass every datagram received on ``sock`` to ``handle(data, source)``."""
    while True:
        await _wait_readable(sock)
        for _ in range(_RECV_BATCH):
            try:
                data, source = sock.recvfrom(_MAX_PACKET)
            except (BlockingIOError, InterruptedError):
                break
            except OSError as exc:
                log.debug("mDNS receive failed", extra={"interface": ip, "error": str(exc)})
                break
            handle(data, source)
