"""The mDNS service: announce this node, answer queries, query, and report peers.

p2pd has no mDNS, so this implements the libp2p spec
(https://github.com/libp2p/specs/blob/master/discovery/mdns.md), compatible with go-, rust-
and js-libp2p; the packet shapes are in :mod:`.packets`. The libp2p flavour differs from
DNS-SD: no SRV/A records, responses from any source port must be accepted (rust-libp2p
sends from an ephemeral port), and responses are always multicast (rust-libp2p listens for
them on 5353 only). Legacy unicast replies (RFC 6762 6.7) are deliberately not sent:
rust-libp2p would take a reply that repeats the question for a query, and unicasting to a
packet's (spoofable) source address would make us a reflector.

Safety on a hostile LAN: one socket per configured interface (:mod:`.sockets`); discovered
peers are capped and expire with their TTL (:mod:`.peers`); loopback and unspecified
addresses from the network are dropped; our own responses are rate-limited to one per second
per interface (RFC 6762 section 6) so a query flood cannot make us flood.
"""

from __future__ import annotations

import contextlib
import dataclasses
import inspect
import ipaddress
import logging
import math
import random
import socket
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Final

import anyio
import anyio.abc

from fabstir_sidecar.core.errors import ConfigError
from fabstir_sidecar.core.peer_id import PeerId
from fabstir_sidecar.discovery.mdns import packets, sockets
from fabstir_sidecar.discovery.mdns.addrs import (
    canonical_own_addrs,
    ip4_host,
    is_dns_addr,
    usable_remote,
)
from fabstir_sidecar.discovery.mdns.dnsaddr import build_txt, parse_dnsaddr_txt, random_peer_name
from fabstir_sidecar.discovery.mdns.packets import RECORD_TTL, SERVICE_NAME
from fabstir_sidecar.discovery.mdns.peers import PeerTable

__all__ = [
    "DEFAULT_QUERY_INTERVAL",
    "MAX_TTL",
    "MIN_QUERY_INTERVAL",
    "MdnsService",
    "PeerCallback",
    "PeerRemovedCallback",
]

log = logging.getLogger(__name__)

DEFAULT_QUERY_INTERVAL: Final = 10.0
MIN_QUERY_INTERVAL: Final = 1.0  # RFC 6762 section 5.2: at least one second between queries
MAX_TTL: Final = 4500  # received TTLs are clamped to RFC 6762's 75 minutes

_MAX_TXT_STRINGS: Final = 64  # dnsaddr strings parsed per instance per packet
_MIN_RESPONSE_GAP: Final = 1.0  # RFC 6762 section 6: a record at most once a second per link
_RESPONSE_JITTER: Final = (0.02, 0.12)  # RFC 6762 section 6: delay for shared records
_OWN_QUERY_WINDOW: Final = 1.0  # our looped-back query copies arrive within this

PeerCallback = Callable[[str, list[str]], Awaitable[None] | None]
PeerRemovedCallback = Callable[[str], Awaitable[None] | None]


@dataclasses.dataclass(slots=True)
class Link:
    """One interface the service runs on: its socket, what we announce there, and the
    state of its rate-limited responder."""

    ip: str
    sock: socket.socket
    txt: list[bytes] = dataclasses.field(default_factory=list)
    wake: anyio.Event = dataclasses.field(default_factory=anyio.Event)
    delay: float = 0.0
    requested_at: float = -math.inf
    last_response: float = -math.inf
    own_queries: int = 0  # our queries whose looped-back copy has not come back yet
    own_queries_until: float = -math.inf


class MdnsService:
    """Announce this node and discover peers with libp2p mDNS on the given interfaces.

    ``addrs`` are this node's full multiaddrs (``.../p2p/<peer_id>``); on each interface
    only those reachable there are announced (``/ip4/<that interface's address>/...`` and
    ``/dns*`` names), so loopback addresses never leave the host. ``interfaces`` are IPv4
    interface addresses (see :func:`~.policy.mdns_interfaces`); with none, :meth:`run`
    does nothing.

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
        self._addrs = canonical_own_addrs(addrs, self._peer_id)
        self._name = random_peer_name()
        self._instance = f"{self._name}.{SERVICE_NAME}"
        self._instance_key = self._instance.lower()
        self._table = PeerTable(self._interfaces, on_found=self._found, on_gone=self._gone)
        self._links: list[Link] = []
        self._tg: anyio.abc.TaskGroup | None = None
        self._running = False
        self._query = packets.build_query()

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
        if self._running:
            self._table.expire(anyio.current_time())
        return self._table.snapshot()

    def update_addrs(self, addrs: Sequence[str]) -> None:
        """Replace our announced addresses; announces the change at once if running."""
        self._addrs = canonical_own_addrs(addrs, self._peer_id)
        for link in self._links:
            txt = self._txt_for(link.ip)
            if txt == link.txt:
                continue
            if not txt:  # nothing left to announce here: withdraw what was announced
                self._send(link, self._response(link, ttl=0))
            link.txt = txt
            if txt:
                self._request_response(link, jitter=False)

    async def run(
        self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Announce, answer and query until cancelled; on exit say goodbye (TTL 0)."""
        if self._running:
            raise RuntimeError("MdnsService.run() is already running")
        self._running = True
        links: list[Link] = []
        try:
            for ip in self._interfaces:
                try:
                    sock = sockets.open_socket(ip)
                except OSError as exc:
                    log.warning(
                        "mDNS: cannot use interface", extra={"interface": ip, "error": str(exc)}
                    )
                    continue
                links.append(Link(ip, sock, self._txt_for(ip)))
            self._links = links
            if not links:
                log.info("mDNS idle: no usable interface", extra={"interfaces": self._interfaces})
                task_status.started()
                await anyio.sleep_forever()
            log.info(
                "mDNS started",
                extra={"interfaces": [link.ip for link in links], "peer_name": self._name},
            )
            async with anyio.create_task_group() as tg:
                self._tg = tg
                for link in links:
                    tg.start_soon(self._receive, link)
                    tg.start_soon(self._responder, link)
                tg.start_soon(self._query_loop)
                task_status.started()
        finally:
            self._tg = None
            self._links = []
            self._running = False
            for link in links:
                if link.txt:  # goodbye: the same records with TTL 0 (RFC 6762 10.1)
                    self._send(link, self._response(link, ttl=0))
                link.sock.close()
            if links:
                log.info("mDNS stopped")

    # ----------------------------------------------------------------- our records

    def _txt_for(self, ip: str) -> list[bytes]:
        """TXT strings for the addresses reachable on the interface with address ``ip``."""
        local = [a for a in self._addrs if ip4_host(a) == ip or is_dns_addr(a)]
        return build_txt(local)

    def _response(self, link: Link, *, ttl: int = RECORD_TTL) -> list[bytes]:
        """Our response packet(s) for ``link`` (``ttl`` 0: the goodbye)."""
        return packets.build_response(self._instance, link.txt, ttl=ttl)

    # ---------------------------------------------------------------------- tasks

    def _send(self, link: Link, data: list[bytes]) -> None:
        sockets.send(link.sock, link.ip, data)

    def _request_response(self, link: Link, *, jitter: bool) -> None:
        if not link.wake.is_set():
            link.delay = random.uniform(*_RESPONSE_JITTER) if jitter else 0.0
            link.requested_at = anyio.current_time()
            link.wake.set()

    async def _responder(self, link: Link) -> None:
        """Send our response when asked, at most once per second on this interface."""
        while True:
            await link.wake.wait()
            link.wake = anyio.Event()
            if link.last_response >= link.requested_at:
                continue  # a response sent since the request already answered it
            delay = max(link.delay, link.last_response + _MIN_RESPONSE_GAP - anyio.current_time())
            if delay > 0:
                await anyio.sleep(delay)
            link.last_response = anyio.current_time()
            if link.txt:
                self._send(link, self._response(link))

    def _announce(self) -> None:
        for link in self._links:
            self._request_response(link, jitter=False)

    async def _query_loop(self) -> None:
        """Announce (twice, RFC 6762 8.3) and query at start, then query every interval."""
        self._announce()
        next_query = anyio.current_time()
        second_announcement = next_query + 1.0
        while True:
            now = anyio.current_time()
            if now >= next_query:
                for link in self._links:
                    self._send(link, self._query)
                    link.own_queries += len(self._query)
                    link.own_queries_until = now + _OWN_QUERY_WINDOW
                self._table.expire(now)
                next_query = now + self._query_interval
            if second_announcement <= now:
                self._announce()
                second_announcement = math.inf
            await anyio.sleep(max(0.0, min(next_query, second_announcement) - now))

    async def _receive(self, link: Link) -> None:
        await sockets.receive_forever(
            link.sock, link.ip, lambda data, source: self._handle_packet(link, data, source)
        )

    # ------------------------------------------------------------- packet handling

    def _handle_packet(self, link: Link, data: bytes, source: tuple[str, int]) -> None:
        """Process one packet received on ``link``; a bad one is dropped (logged at debug)."""
        try:
            msg = packets.parse_packet(data, source)
            if isinstance(msg, packets.Query):
                if not self._own_query(link, data, source):
                    self._on_query(link, msg)
            elif msg is not None:
                self._on_response(link, msg)
        except Exception:  # hostile input must never stop the service
            log.debug("mDNS: dropped a packet", extra={"source": source[0]}, exc_info=True)

    def _own_query(self, link: Link, data: bytes, source: tuple[str, int]) -> bool:
        """Whether this is the multicast loopback copy of one of our own queries.

        Each query we send is skipped once when it comes back (another node on this host
        sends the same bytes from the same address; if its copy comes first, it is the one
        skipped and ours is answered: same outcome). Answering ourselves would only waste a
        response and, through the rate limit, delay the answer to someone else's query.
        """
        if link.own_queries <= 0 or (source[0], source[1]) != (link.ip, sockets.MDNS_PORT):
            return False
        if anyio.current_time() > link.own_queries_until:  # a copy got lost: forget them
            link.own_queries = 0
            return False
        if data not in self._query:
            return False
        link.own_queries -= 1
        return True

    def _on_query(self, link: Link, query: packets.Query) -> None:
        if not query.asks_service or not link.txt:
            return
        if query.known.get(self._instance_key, -1) >= RECORD_TTL / 2:
            return  # known-answer suppression (RFC 6762 7.1)
        self._request_response(link, jitter=True)

    def _on_response(self, link: Link, response: packets.Response) -> None:
        targets = response.pointers
        now = anyio.current_time()
        for instance, ttl in targets.items():
            if ttl == 0:
                self._table.goodbye(link.ip, instance)
        for instance, (strings, text_ttl) in response.texts.items():
            if instance not in targets and self._table.peer_by_instance(link.ip, instance) is None:
                continue
            if instance == self._instance_key:
                continue
            ttl = min(text_ttl, targets.get(instance, text_ttl), MAX_TTL)
            if ttl == 0:
                self._table.goodbye(link.ip, instance)
                continue
            # One peer per instance, the first one named (as rust- and js-libp2p).
            found = parse_dnsaddr_txt(
                strings[:_MAX_TXT_STRINGS], own_peer_id=self._peer_id, max_peers=1
            )
            for peer, addrs in found.items():
                usable = [a for a in addrs if usable_remote(a)]
                if usable:
                    self._table.learn(link.ip, instance, peer, usable, now + ttl, now)

    # ------------------------------------------------------------------ callbacks

    def _found(self, peer: str, addrs: list[str]) -> None:
        self._call(self._on_peer, peer, addrs)

    def _gone(self, peer: str) -> None:
        if self._on_peer_removed is not None:
            self._call(self._on_peer_removed, peer)

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
