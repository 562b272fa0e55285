"""libp2p mDNS peer discovery on the local network.

p2pd has no mDNS, so this module implements the libp2p spec
(https://github.com/libp2p/specs/blob/master/discovery/mdns.md) in Python, compatible with
go-, rust- and js-libp2p:

* service name ``_p2p._udp.local``; each node has a random *peer name* (32-63 letters and
  digits) and is the instance ``<peer-name>._p2p._udp.local``;
* a query is one question ``PTR _p2p._udp.local`` (class IN, multicast reply wanted);
* a response has the answer ``PTR _p2p._udp.local -> <peer-name>._p2p._udp.local`` and the
  additional record ``TXT <peer-name>._p2p._udp.local`` with one ``dnsaddr=<multiaddr>/p2p/<id>``
  string per address, no question section, id 0, flags QR|AA. rust-libp2p reads the PTR
  from the answers and the TXT from the additionals; js-libp2p reads both sections.

Wire format (encoding, name compression, defensive decoding of hostile packets) is
python-zeroconf's ``DNSOutgoing``/``DNSIncoming``; the sockets and the protocol logic are
ours, because the libp2p flavour differs from DNS-SD: no SRV/A records, responses from any
source port must be accepted (rust-libp2p sends from an ephemeral port), and responses are
always multicast (rust-libp2p listens for them on 5353 only). Legacy unicast replies
(RFC 6762 6.7) are deliberately not sent: rust-libp2p would take a reply that repeats the
question for a query, and unicasting to a packet's (spoofable) source address would make
us a reflector.

Safety on a hostile LAN: one socket per configured interface, each bound to the mDNS group
with ``IP_MULTICAST_ALL=0`` (Linux) so it hears only its own interface, and sending only
there (``IP_MULTICAST_IF``); nothing is sent anywhere else. Discovered peers are capped
(:data:`MAX_PEERS`, :data:`MAX_ADDRS_PER_PEER`), expire with their TTL, loopback and
unspecified addresses from the network are dropped, and our own responses are rate-limited
to one per second per interface (RFC 6762 section 6) so a query flood cannot make us flood.

IPv4 only (the spec's ``224.0.0.251``); IPv6 listen addresses are not announced.
"""

from __future__ import annotations

import contextlib
import dataclasses
import inspect
import ipaddress
import logging
import math
import random
import secrets
import socket
import string
import struct
import sys
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from typing import Any, Final

import anyio
import anyio.abc
from zeroconf._dns import DNSPointer, DNSQuestion, DNSText
from zeroconf._protocol.incoming import DNSIncoming
from zeroconf._protocol.outgoing import DNSOutgoing

from fabstir_sidecar.core.errors import ConfigError, FabstirError, InvalidMultiaddrError
from fabstir_sidecar.core.multiaddr import split_peer_multiaddr
from fabstir_sidecar.core.peer_id import PeerId

try:  # anyio >= 4.7
    from anyio import wait_readable as _wait_readable
except ImportError:  # pragma: no cover - anyio 4.4-4.6
    from anyio import wait_socket_readable as _wait_readable  # type: ignore[assignment,no-redef,unused-ignore]

__all__ = [
    "DEFAULT_QUERY_INTERVAL",
    "MAX_ADDRS_PER_PEER",
    "MAX_PEERS",
    "MDNS_GROUP",
    "MDNS_PORT",
    "RECORD_TTL",
    "SERVICE_NAME",
    "MdnsService",
    "PeerCallback",
    "PeerRemovedCallback",
    "build_txt",
    "decode_txt_rdata",
    "encode_txt_rdata",
    "local_ipv4_interfaces",
    "mdns_interfaces",
    "parse_dnsaddr_txt",
    "random_peer_name",
]

log = logging.getLogger(__name__)

SERVICE_NAME: Final = "_p2p._udp.local."
MDNS_GROUP: Final = "224.0.0.251"
MDNS_PORT: Final = 5353
DEFAULT_QUERY_INTERVAL: Final = 10.0
MIN_QUERY_INTERVAL: Final = 1.0  # RFC 6762 section 5.2: at least one second between queries
RECORD_TTL: Final = 120  # seconds, as js-libp2p (RFC 6762 recommends 120 s for such records)
MAX_TTL: Final = 4500  # received TTLs are clamped to RFC 6762's 75 minutes
MAX_ADDRS_PER_PEER: Final = 16
MAX_PEERS: Final = 256
MAX_TXT_STRING: Final = 255  # one DNS <character-string>
MAX_TXT_BYTES: Final = 1300  # our TXT rdata: keeps a response in one Ethernet frame

DNSADDR_PREFIX: Final = "dnsaddr="
PEER_NAME_ALPHABET: Final = string.ascii_letters + string.digits
PEER_NAME_MIN: Final = 32
PEER_NAME_MAX: Final = 63

_TYPE_PTR: Final = 12
_TYPE_TXT: Final = 16
_TYPE_ANY: Final = 255
_CLASS_IN: Final = 1
_CLASS_UNIQUE: Final = 0x8000  # the cache-flush bit on records
_FLAGS_QR_RESPONSE: Final = 0x8000
_FLAGS_AA: Final = 0x0400
_FLAGS_OPCODE: Final = 0x7800
_FLAGS_RCODE: Final = 0x000F

_MAX_PACKET: Final = 9000  # RFC 6762 section 17
_MAX_RECORDS_PER_PACKET: Final = 64  # records of a received response we look at
_MAX_TXT_STRINGS: Final = 64  # dnsaddr strings parsed per instance per packet
_RECV_BATCH: Final = 64
_MIN_RESPONSE_GAP: Final = 1.0  # RFC 6762 section 6: a record at most once a second per link
_RESPONSE_JITTER: Final = (0.02, 0.12)  # RFC 6762 section 6: delay for shared records
_OWN_QUERY_WINDOW: Final = 1.0  # our looped-back query copies arrive within this

# Linux: deliver to a socket only the groups it joined itself, on the interface it joined
# them on (otherwise every socket bound to 5353 hears every interface's mDNS).
_IP_MULTICAST_ALL: Final = int(getattr(socket, "IP_MULTICAST_ALL", 49))
_IS_LINUX: Final = sys.platform.startswith("linux")

PeerCallback = Callable[[str, list[str]], Awaitable[None] | None]
PeerRemovedCallback = Callable[[str], Awaitable[None] | None]


# ------------------------------------------------------------------- pure helpers


def random_peer_name() -> str:
    """A fresh random peer name: 32-63 ASCII letters and digits (as rust-libp2p)."""
    length = PEER_NAME_MIN + secrets.randbelow(PEER_NAME_MAX - PEER_NAME_MIN + 1)
    return "".join(secrets.choice(PEER_NAME_ALPHABET) for _ in range(length))


def _double_p2p(address: str) -> bool:
    """True if ``address`` (the part before the final ``/p2p/<id>``) ends in ``/p2p/<x>``."""
    parts = address.split("/")
    return len(parts) >= 3 and parts[-2] == "p2p"


def _unspecified(address: str) -> bool:
    return address.startswith(("/ip4/0.0.0.0/", "/ip6/::/"))


def build_txt(
    addrs: Iterable[str], *, max_addrs: int = MAX_ADDRS_PER_PEER, max_bytes: int = MAX_TXT_BYTES
) -> list[bytes]:
    """The TXT strings announcing ``addrs``: ``dnsaddr=<multiaddr>/p2p/<peer id>`` each.

    ``addrs`` are full multiaddrs of one peer, each ending in ``/p2p/<peer id>`` (the id is
    not appended again). Duplicates are dropped; addresses whose string would exceed a DNS
    character-string (255 bytes) are skipped; at most ``max_addrs`` strings and
    ``max_bytes`` of TXT rdata are returned (the rest is dropped, logged at debug).

    Raises :class:`~fabstir_sidecar.core.errors.InvalidMultiaddrError` for an address that does
    not parse, lacks ``/p2p/<id>``, carries ``/p2p/<id>`` twice, or names another peer.
    """
    out: list[bytes] = []
    total = 0
    peer: str | None = None
    for addr in addrs:
        address, peer_id = split_peer_multiaddr(addr, name="addrs")
        if _double_p2p(address):
            raise InvalidMultiaddrError("addrs", addr, "contains /p2p/<peer id> twice")
        if peer is None:
            peer = peer_id
        elif peer_id != peer:
            raise InvalidMultiaddrError("addrs", addr, f"names peer {peer_id}, not {peer}")
        text = f"{DNSADDR_PREFIX}{address}/p2p/{peer_id}".encode()
        if len(text) > MAX_TXT_STRING:
            log.debug("mDNS: address too long for a TXT string", extra={"address": addr})
            continue
        if text in out:
            continue
        if len(out) >= max_addrs or total + 1 + len(text) > max_bytes:
            log.debug("mDNS: not announcing more addresses", extra={"dropped": addr})
            continue
        out.append(text)
        total += 1 + len(text)
    return out


def encode_txt_rdata(strings: Iterable[bytes]) -> bytes:
    """TXT rdata: each string prefixed by its length (RFC 1035 <character-string>)."""
    parts = []
    for item in strings:
        if len(item) > MAX_TXT_STRING:
            raise ValueError(f"TXT string of {len(item)} bytes exceeds {MAX_TXT_STRING}")
        parts.append(bytes([len(item)]) + item)
    return b"".join(parts) or b"\x00"  # RFC 6763 6.1: an empty TXT has one empty string


def decode_txt_rdata(rdata: bytes) -> list[bytes]:
    """Split TXT rdata into its strings; a truncated last string is dropped."""
    out: list[bytes] = []
    offset = 0
    while offset < len(rdata):
        length = rdata[offset]
        end = offset + 1 + length
        if end > len(rdata):
            break
        out.append(rdata[offset + 1 : end])
        offset = end
    return out


def parse_dnsaddr_txt(
    strings: Iterable[bytes | str],
    *,
    own_peer_id: str | None = None,
    max_addrs_per_peer: int = MAX_ADDRS_PER_PEER,
    max_peers: int = MAX_PEERS,
) -> dict[str, list[str]]:
    """Peers and their full multiaddrs (``.../p2p/<id>``) from TXT strings.

    Strings other than ``dnsaddr=<multiaddr>/p2p/<peer id>`` (key case-insensitive) are
    ignored, as are multiaddrs that do not parse, carry ``/p2p/<id>`` twice, or have an
    unspecified host; so are ``own_peer_id``'s. Duplicates are dropped; at most
    ``max_addrs_per_peer`` addresses per peer and ``max_peers`` peers (first seen first).
    """
    result: dict[str, list[str]] = {}
    for raw in strings:
        if isinstance(raw, bytes):
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError:
                continue
        else:
            text = raw
        key, sep, value = text.partition("=")
        if not sep or key.lower() != "dnsaddr":
            continue
        try:
            address, peer_id = split_peer_multiaddr(value, name="dnsaddr")
        except (FabstirError, ValueError):
            continue
        if _double_p2p(address) or _unspecified(address) or peer_id == own_peer_id:
            continue
        addrs = result.get(peer_id)
        if addrs is None:
            if len(result) >= max_peers:
                continue
            addrs = result[peer_id] = []
        full = f"{address}/p2p/{peer_id}"
        if full not in addrs and len(addrs) < max_addrs_per_peer:
            addrs.append(full)
    return result


def _ip4_host(addr: str) -> str | None:
    """The IPv4 host of ``/ip4/<host>/...``, else ``None``."""
    parts = addr.split("/")
    if len(parts) >= 3 and parts[0] == "" and parts[1] == "ip4":
        try:
            return str(ipaddress.IPv4Address(parts[2]))
        except ValueError:
            return None
    return None


def _is_dns_addr(addr: str) -> bool:
    return addr.startswith(("/dns/", "/dns4/", "/dns6/"))


def _usable_remote(addr: str) -> bool:
    """Whether an address learnt from the network may be dialed: no loopback addresses
    (a LAN peer's 127.0.0.1 is our own host: never dial it on someone's say-so)."""
    host = _ip4_host(addr)
    if host is not None:
        return not ipaddress.IPv4Address(host).is_loopback
    return not addr.startswith(("/ip6/::1/", "/dns/localhost/", "/dns4/localhost/"))


# Linux <linux/sockios.h>, <net/if.h>
_SIOCGIFFLAGS: Final = 0x8913
_SIOCGIFADDR: Final = 0x8915
_IFF_UP: Final = 0x1
_IFF_LOOPBACK: Final = 0x8
_IFF_MULTICAST: Final = 0x1000


def local_ipv4_interfaces() -> dict[str, str]:
    """``{interface name: primary IPv4 address}`` of the interfaces that are up, not
    loopback and multicast-capable (Linux; elsewhere ``{}``: pass addresses explicitly)."""
    if not _IS_LINUX:
        return {}
    import fcntl  # POSIX only

    result: dict[str, str] = {}
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        for _index, name in socket.if_nameindex():
            request = struct.pack("256s", name.encode()[:15])
            try:
                flags = struct.unpack_from(
                    "H", fcntl.ioctl(probe.fileno(), _SIOCGIFFLAGS, request), 16
                )[0]
                if not flags & _IFF_UP or flags & _IFF_LOOPBACK or not flags & _IFF_MULTICAST:
                    continue
                reply = fcntl.ioctl(probe.fileno(), _SIOCGIFADDR, request)
            except OSError:  # vanished, or no IPv4 address
                continue
            result[name] = socket.inet_ntoa(reply[20:24])
    return result


def mdns_interfaces(
    listen_addrs: Sequence[str], available: Mapping[str, str] | None = None
) -> list[str]:
    """The IPv4 interface addresses mDNS should run on, given the node's listen addresses.

    * ``/ip4/0.0.0.0/...``: every non-loopback IPv4 interface address (``available`` maps
      interface name to address; default :func:`local_ipv4_interfaces`);
    * a specific non-loopback ``/ip4/<ip>/...``: that address;
    * loopback (``127.0.0.0/8``) listen addresses contribute nothing: a node reachable only
      on this host has nothing to announce, and sends nothing on any network.

    IPv6 and DNS listen addresses are ignored (mDNS here is IPv4). An empty result means
    mDNS stays off; the reason is logged at INFO.
    """
    chosen: list[str] = []
    wildcard = False
    loopback = False
    for addr in listen_addrs:
        host = _ip4_host(addr)
        if host is None:
            continue
        ip = ipaddress.IPv4Address(host)
        if ip.is_unspecified:
            wildcard = True
        elif ip.is_loopback:
            loopback = True
        elif host not in chosen:
            chosen.append(host)
    if wildcard:
        interfaces = local_ipv4_interfaces() if available is None else available
        for iface_ip in interfaces.values():
            try:
                ip = ipaddress.IPv4Address(iface_ip)
            except ValueError:
                continue
            if not (ip.is_loopback or ip.is_unspecified) and str(ip) not in chosen:
                chosen.append(str(ip))
    if not chosen:
        if wildcard:
            reason = "no non-loopback IPv4 interface is up"
        elif loopback:
            reason = "the node listens on loopback only"
        else:
            reason = "the node has no IPv4 listen address"
        log.info(f"mDNS off: {reason}", extra={"listen": list(listen_addrs)})
    return chosen


# ---------------------------------------------------------------------- the service


@dataclasses.dataclass(slots=True)
class _Source:
    """What one interface last heard about a peer."""

    instance: str
    addrs: list[str]
    expires: float


@dataclasses.dataclass(slots=True)
class _Peer:
    sources: dict[str, _Source] = dataclasses.field(default_factory=dict)
    addrs: list[str] = dataclasses.field(default_factory=list)


@dataclasses.dataclass(slots=True)
class _Interface:
    ip: str
    sock: socket.socket
    txt: list[bytes] = dataclasses.field(default_factory=list)
    wake: anyio.Event = dataclasses.field(default_factory=anyio.Event)
    delay: float = 0.0
    requested_at: float = -math.inf
    last_response: float = -math.inf
    own_queries: int = 0  # our queries whose looped-back copy has not come back yet
    own_queries_until: float = -math.inf


def _open_socket(ip: str) -> socket.socket:
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


class MdnsService:
    """Announce this node and discover peers with libp2p mDNS on the given interfaces.

    ``addrs`` are this node's full multiaddrs (``.../p2p/<peer_id>``); on each interface
    only those reachable there are announced (``/ip4/<that interface's address>/...`` and
    ``/dns*`` names), so loopback addresses never leave the host. ``interfaces`` are IPv4
    interface addresses (see :func:`mdns_interfaces`); with none, :meth:`run` does nothing.

    ``on_peer(peer_id, addrs)`` (sync or async) is called for each new peer and when a known
    peer's address set changes, never for ourselves; its exceptions are logged.
    ``on_peer_removed(peer_id)`` (sync or async, optional) is called once a reported peer is
    gone: it said goodbye (TTL 0) or its records expired on every interface. Expiry is
    noticed at each query round and whenever :attr:`peers` is read.
    """

    def __init__(
        self,
        *,
        peer_id: str,
        addrs: Sequence[str],
        interfaces: Sequence[str],
        on_peer: PeerCallback,
        on_peer_removed: PeerRemovedCallback | None = None,
        query_interval: float = DEFAULT_QUERY_INTERVAL,
    ) -> None:
        self._peer_id = PeerId.parse(peer_id, name="peer_id")
        if (
            isinstance(query_interval, bool)
            or not isinstance(query_interval, int | float)
            or not math.isfinite(query_interval)
            or query_interval < MIN_QUERY_INTERVAL
        ):
            raise ConfigError(
                "query_interval", query_interval, f"must be >= {MIN_QUERY_INTERVAL} seconds"
            )
        self._interfaces: list[str] = []
        for ip in interfaces:
            try:
                canonical = str(ipaddress.IPv4Address(ip))
            except ValueError as exc:
                raise ConfigError("interfaces", ip, "expected an IPv4 address") from exc
            if canonical not in self._interfaces:
                self._interfaces.append(canonical)
        self._query_interval = float(query_interval)
        self._on_peer = on_peer
        self._on_peer_removed = on_peer_removed
        self._addrs = self._own_addrs(addrs)
        self._name = random_peer_name()
        self._instance = f"{self._name}.{SERVICE_NAME}"
        self._instance_key = self._instance.lower()
        self._peers: dict[str, _Peer] = {}
        self._ifaces: list[_Interface] = []
        self._tg: anyio.abc.TaskGroup | None = None
        self._running = False
        self._query = self._build_query()

    # ------------------------------------------------------------------ public API

    @property
    def peer_name(self) -> str:
        """Our random peer name (the instance is ``<peer_name>._p2p._udp.local``)."""
        return self._name

    @property
    def interfaces(self) -> list[str]:
        """The interface addresses mDNS was asked to run on."""
        return list(self._interfaces)

    @property
    def peers(self) -> dict[str, list[str]]:
        """Discovered peers (not expired): peer id -> full multiaddrs."""
        self._expire(anyio.current_time() if self._running else None)
        return {peer: list(entry.addrs) for peer, entry in self._peers.items()}

    def update_addrs(self, addrs: Sequence[str]) -> None:
        """Replace our announced addresses; announces the change at once if running."""
        self._addrs = self._own_addrs(addrs)
        for iface in self._ifaces:
            txt = self._txt_for(iface.ip)
            if txt == iface.txt:
                continue
            if not txt:  # nothing left to announce here: withdraw what was announced
                self._send(iface, self._response(iface, ttl=0))
            iface.txt = txt
            if txt:
                self._request_response(iface, jitter=False)

    async def run(
        self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Announce, answer and query until cancelled; on exit say goodbye (TTL 0)."""
        if self._running:
            raise RuntimeError("MdnsService.run() is already running")
        self._running = True
        ifaces: list[_Interface] = []
        try:
            for ip in self._interfaces:
                try:
                    sock = _open_socket(ip)
                except OSError as exc:
                    log.warning(
                        "mDNS: cannot use interface", extra={"interface": ip, "error": str(exc)}
                    )
                    continue
                ifaces.append(_Interface(ip, sock, self._txt_for(ip)))
            self._ifaces = ifaces
            if not ifaces:
                log.info("mDNS idle: no usable interface", extra={"interfaces": self._interfaces})
                task_status.started()
                await anyio.sleep_forever()
            log.info(
                "mDNS started",
                extra={"interfaces": [i.ip for i in ifaces], "peer_name": self._name},
            )
            async with anyio.create_task_group() as tg:
                self._tg = tg
                for iface in ifaces:
                    tg.start_soon(self._receive_loop, iface)
                    tg.start_soon(self._responder, iface)
                tg.start_soon(self._query_loop)
                task_status.started()
        finally:
            self._tg = None
            self._ifaces = []
            self._running = False
            for iface in ifaces:
                if iface.txt:  # goodbye: the same records with TTL 0 (RFC 6762 10.1)
                    self._send(iface, self._response(iface, ttl=0))
                iface.sock.close()
            if ifaces:
                log.info("mDNS stopped")

    # ----------------------------------------------------------------- our records

    def _own_addrs(self, addrs: Sequence[str]) -> list[str]:
        """Canonical full multiaddrs of ours; others are skipped with a warning."""
        out: list[str] = []
        for addr in addrs:
            try:
                address, peer_id = split_peer_multiaddr(addr, name="addrs")
            except FabstirError:
                try:  # a bare transport address: it is ours
                    address, peer_id = split_peer_multiaddr(
                        f"{addr}/p2p/{self._peer_id}", name="addrs"
                    )
                except FabstirError as exc:
                    log.warning("mDNS: not announcing address", extra={"error": str(exc)})
                    continue
            if peer_id != self._peer_id or _double_p2p(address):
                log.warning("mDNS: not announcing another peer's address", extra={"addr": addr})
                continue
            full = f"{address}/p2p/{peer_id}"
            if full not in out:
                out.append(full)
        return out

    def _txt_for(self, ip: str) -> list[bytes]:
        """TXT strings for the addresses reachable on the interface with address ``ip``."""
        local = [a for a in self._addrs if _ip4_host(a) == ip or _is_dns_addr(a)]
        return build_txt(local)

    def _response(self, iface: _Interface, *, ttl: int = RECORD_TTL) -> list[bytes]:
        out = DNSOutgoing(_FLAGS_QR_RESPONSE | _FLAGS_AA, multicast=True)
        out.add_answer_at_time(
            DNSPointer(SERVICE_NAME, _TYPE_PTR, _CLASS_IN, ttl, self._instance), 0
        )
        rdata = encode_txt_rdata(iface.txt)
        out.add_additional_answer(
            DNSText(self._instance, _TYPE_TXT, _CLASS_IN | _CLASS_UNIQUE, ttl, rdata)
        )
        return out.packets()

    @staticmethod
    def _build_query() -> list[bytes]:
        out = DNSOutgoing(0, multicast=True)
        out.add_question(DNSQuestion(SERVICE_NAME, _TYPE_PTR, _CLASS_IN))
        return out.packets()

    # ---------------------------------------------------------------------- tasks

    def _send(self, iface: _Interface, packets: list[bytes]) -> None:
        for data in packets:
            try:
                iface.sock.sendto(data, (MDNS_GROUP, MDNS_PORT))
            except OSError as exc:  # interface down, buffer full: mDNS is best effort
                log.debug("mDNS send failed", extra={"interface": iface.ip, "error": str(exc)})

    def _request_response(self, iface: _Interface, *, jitter: bool) -> None:
        if not iface.wake.is_set():
            iface.delay = random.uniform(*_RESPONSE_JITTER) if jitter else 0.0
            iface.requested_at = anyio.current_time()
            iface.wake.set()

    async def _responder(self, iface: _Interface) -> None:
        """Send our response when asked, at most once per second on this interface."""
        while True:
            await iface.wake.wait()
            iface.wake = anyio.Event()
            if iface.last_response >= iface.requested_at:
                continue  # a response sent since the request already answered it
            delay = max(iface.delay, iface.last_response + _MIN_RESPONSE_GAP - anyio.current_time())
            if delay > 0:
                await anyio.sleep(delay)
            iface.last_response = anyio.current_time()
            if iface.txt:
                self._send(iface, self._response(iface))

    def _announce(self) -> None:
        for iface in self._ifaces:
            self._request_response(iface, jitter=False)

    async def _query_loop(self) -> None:
        """Announce (twice, RFC 6762 8.3) and query at start, then query every interval."""
        self._announce()
        next_query = anyio.current_time()
        second_announcement = next_query + 1.0
        while True:
            now = anyio.current_time()
            if now >= next_query:
                for iface in self._ifaces:
                    self._send(iface, self._query)
                    iface.own_queries += len(self._query)
                    iface.own_queries_until = now + _OWN_QUERY_WINDOW
                self._expire(now)
                next_query = now + self._query_interval
            if second_announcement <= now:
                self._announce()
                second_announcement = math.inf
            await anyio.sleep(max(0.0, min(next_query, second_announcement) - now))

    async def _receive_loop(self, iface: _Interface) -> None:
        while True:
            await _wait_readable(iface.sock)
            for _ in range(_RECV_BATCH):
                try:
                    data, source = iface.sock.recvfrom(_MAX_PACKET)
                except (BlockingIOError, InterruptedError):
                    break
                except OSError as exc:
                    log.debug(
                        "mDNS receive failed", extra={"interface": iface.ip, "error": str(exc)}
                    )
                    break
                self._handle_packet(iface, data, source)

    # ------------------------------------------------------------- packet handling

    def _handle_packet(self, iface: _Interface, data: bytes, source: tuple[str, int]) -> None:
        try:
            msg = DNSIncoming(data, (source[0], source[1]))
            if not msg.valid or msg.flags & (_FLAGS_OPCODE | _FLAGS_RCODE):
                return  # RFC 6762 18.3, 18.11: ignore other opcodes and rcodes
            if msg.is_query():
                if not self._own_query(iface, data, source):
                    self._on_query(iface, msg)
            else:
                self._on_response(iface, msg)
        except Exception:  # hostile input must never stop the service
            log.debug("mDNS: dropped a packet", extra={"source": source[0]}, exc_info=True)

    def _own_query(self, iface: _Interface, data: bytes, source: tuple[str, int]) -> bool:
        """Whether this is the multicast loopback copy of one of our own queries.

        Each query we send is skipped once when it comes back (another node on this host
        sends the same bytes from the same address; if its copy comes first, it is the one
        skipped and ours is answered: same outcome). Answering ourselves would only waste a
        response and, through the rate limit, delay the answer to someone else's query.
        """
        if iface.own_queries <= 0 or (source[0], source[1]) != (iface.ip, MDNS_PORT):
            return False
        if anyio.current_time() > iface.own_queries_until:  # a copy got lost: forget them
            iface.own_queries = 0
            return False
        if data not in self._query:
            return False
        iface.own_queries -= 1
        return True

    def _on_query(self, iface: _Interface, msg: DNSIncoming) -> None:
        asked = any(
            q.name.lower() == SERVICE_NAME and q.type in (_TYPE_PTR, _TYPE_ANY)
            for q in msg.questions
        )
        if not asked or not iface.txt:
            return
        for record in msg.answers()[:_MAX_RECORDS_PER_PACKET]:
            if (  # known-answer suppression (RFC 6762 7.1)
                isinstance(record, DNSPointer)
                and record.name.lower() == SERVICE_NAME
                and record.alias.lower() == self._instance_key
                and record.ttl >= RECORD_TTL / 2
            ):
                return
        self._request_response(iface, jitter=True)

    def _on_response(self, iface: _Interface, msg: DNSIncoming) -> None:
        records = msg.answers()[:_MAX_RECORDS_PER_PACKET]
        targets: dict[str, int] = {}  # instance -> PTR ttl
        for record in records:
            if (
                isinstance(record, DNSPointer)
                and record.type == _TYPE_PTR
                and record.name.lower() == SERVICE_NAME
            ):
                targets[record.alias.lower()] = record.ttl
        texts: dict[str, tuple[list[bytes], int]] = {}
        for record in records:
            if not isinstance(record, DNSText):
                continue
            instance = record.name.lower()
            if instance not in targets and self._peer_by_instance(iface.ip, instance) is None:
                continue
            strings, ttl = texts.get(instance, ([], record.ttl))
            strings.extend(decode_txt_rdata(record.text))
            texts[instance] = (strings, min(ttl, record.ttl))
        now = anyio.current_time()
        for instance, ttl in targets.items():
            if ttl == 0:
                self._goodbye(iface.ip, instance)
        for instance, (strings, ttl) in texts.items():
            if instance == self._instance_key:
                continue
            ttl = min(ttl, targets.get(instance, ttl), MAX_TTL)
            if ttl == 0:
                self._goodbye(iface.ip, instance)
                continue
            # One peer per instance, the first one named (as rust- and js-libp2p).
            found = parse_dnsaddr_txt(
                strings[:_MAX_TXT_STRINGS], own_peer_id=self._peer_id, max_peers=1
            )
            for peer, addrs in found.items():
                usable = [a for a in addrs if _usable_remote(a)]
                if usable:
                    self._learn(iface.ip, instance, peer, usable, now + ttl)

    # ------------------------------------------------------------------ peer table

    def _peer_by_instance(self, iface_ip: str, instance: str) -> str | None:
        for peer, entry in self._peers.items():
            source = entry.sources.get(iface_ip)
            if source is not None and source.instance == instance:
                return peer
        return None

    def _learn(
        self, iface_ip: str, instance: str, peer: str, addrs: list[str], expires: float
    ) -> None:
        entry = self._peers.get(peer)
        if entry is None:
            self._expire(anyio.current_time())
            if len(self._peers) >= MAX_PEERS:
                log.debug("mDNS: peer table full, ignoring peer", extra={"peer": peer})
                return
            entry = self._peers[peer] = _Peer()
        entry.sources[iface_ip] = _Source(instance, addrs, expires)
        self._refresh(peer, entry, notify=True)

    def _goodbye(self, iface_ip: str, instance: str) -> None:
        peer = self._peer_by_instance(iface_ip, instance)
        if peer is not None:
            entry = self._peers[peer]
            del entry.sources[iface_ip]
            log.debug("mDNS: peer said goodbye", extra={"peer": peer, "interface": iface_ip})
            self._refresh(peer, entry, notify=True)

    def _expire(self, now: float | None) -> None:
        if now is None:
            return
        for peer, entry in list(self._peers.items()):
            stale = [ip for ip, source in entry.sources.items() if source.expires <= now]
            for ip in stale:
                del entry.sources[ip]
            if stale:
                self._refresh(peer, entry, notify=False)

    def _refresh(self, peer: str, entry: _Peer, *, notify: bool) -> None:
        """Recompute a peer's addresses from its sources; report a changed set."""
        merged: list[str] = []
        for ip in self._interfaces:
            source = entry.sources.get(ip)
            for addr in source.addrs if source else ():
                if addr not in merged and len(merged) < MAX_ADDRS_PER_PEER:
                    merged.append(addr)
        if not merged:
            del self._peers[peer]
            if entry.addrs:  # it was reported: report that it is gone
                log.debug("mDNS: peer gone", extra={"peer": peer})
                if self._on_peer_removed is not None:
                    self._call(self._on_peer_removed, peer)
            return
        changed = set(merged) != set(entry.addrs)
        entry.addrs = merged
        if changed and notify:
            log.debug("mDNS: peer discovered", extra={"peer": peer, "addrs": merged})
            self._notify(peer, merged)

    def _notify(self, peer: str, addrs: list[str]) -> None:
        self._call(self._on_peer, peer, list(addrs))

    def _call(self, callback: Callable[..., Awaitable[None] | None], peer: str, *args: Any) -> None:
        """Run a sync or async callback; its exceptions are logged, never raised."""
        try:
            result = callback(peer, *args)
        except Exception:
            log.exception("mDNS callback failed", extra={"peer": peer})
            return
        if inspect.isawaitable(result):
            if self._tg is None:  # not running (a stopped service's table read): drop it
                with contextlib.suppress(Exception):
                    result.close()  # type: ignore[attr-defined]
                return
            self._tg.start_soon(self._await_callback, result, peer)

    @staticmethod
    async def _await_callback(result: Awaitable[None], peer: str) -> None:
        try:
            await result
        except Exception:
            log.exception("mDNS callback failed", extra={"peer": peer})
