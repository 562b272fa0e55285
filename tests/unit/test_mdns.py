"""libp2p mDNS: TXT encoding/parsing, interface choice, and packet handling without sockets.

Packets are built with ``tests/netns/dnswire.py`` (as rust-libp2p and js-libp2p build them)
and fed to the service's handler directly: nothing is sent or received here. The real
multicast runs in ``tests/netns`` inside network namespaces.
"""

from __future__ import annotations

import logging
import socket
import string
from collections.abc import Iterator

import anyio
import ifaddr
import pytest

from fabstir_sidecar.core.errors import ConfigError, InvalidMultiaddrError
from fabstir_sidecar.discovery import mdns
from fabstir_sidecar.discovery.mdns import (
    MAX_ADDRS_PER_PEER,
    MAX_PEERS,
    MAX_TXT_BYTES,
    SERVICE_NAME,
    MdnsService,
    build_txt,
    decode_txt_rdata,
    encode_txt_rdata,
    interfaces,
    local_ipv4_interfaces,
    mdns_interfaces,
    packets,
    parse_dnsaddr_txt,
    random_peer_name,
)
from fabstir_sidecar.discovery.mdns.service import Link
from tests.netns import dnswire

ME = "12D3KooWD3eckifWpRn9wQpMG9R9hX3sD158z7EqHWmweQAJU5SA"
OTHER = "QmYyQSo1c1Ym7orWxLYvCrM2EmxFTANf8wXmmE7DWjhx5N"
RELAY = "QmcgpsyWgH8Y8ajJz1Cu72KnS5uo2Aa2LpzU7kinSupNKC"
LAN_IP = "192.168.7.10"
SRC = ("192.168.7.20", 5353)


# ----------------------------------------------------------------- peer names


def test_random_peer_name_length_and_charset() -> None:
    names = [random_peer_name() for _ in range(2000)]
    allowed = set(string.ascii_letters + string.digits)
    assert all(32 <= len(n) <= 63 for n in names)
    assert all(set(n) <= allowed for n in names)
    assert {len(n) for n in names} >= {32, 63}  # the whole range is used
    assert len(set(names)) == len(names)


# ------------------------------------------------------------------- TXT strings


def test_build_and_parse_round_trip() -> None:
    addrs = [
        f"/ip4/{LAN_IP}/tcp/4001/p2p/{OTHER}",
        f"/ip4/{LAN_IP}/udp/4001/quic-v1/p2p/{OTHER}",
        f"/ip6/fe80::1/tcp/4001/p2p/{OTHER}",
        f"/dns4/node.example/tcp/443/wss/p2p/{OTHER}",
        f"/ip4/1.2.3.4/tcp/1/p2p/{RELAY}/p2p-circuit/p2p/{OTHER}",
    ]
    txt = build_txt(addrs)
    assert txt == [f"dnsaddr={a}".encode() for a in addrs]
    assert all(t.count(b"/p2p/") == a.count("/p2p/") for t, a in zip(txt, addrs, strict=True))
    assert parse_dnsaddr_txt(txt) == {OTHER: addrs}
    assert parse_dnsaddr_txt([t.decode() for t in txt]) == {OTHER: addrs}
    assert decode_txt_rdata(encode_txt_rdata(txt)) == txt


def test_build_txt_dedupes_and_does_not_repeat_p2p() -> None:
    addr = f"/ip4/{LAN_IP}/tcp/4001/p2p/{OTHER}"
    assert build_txt([addr, addr]) == [f"dnsaddr={addr}".encode()]


@pytest.mark.parametrize(
    "bad",
    [
        f"/ip4/{LAN_IP}/tcp/4001",  # no /p2p/<id>
        f"/ip4/{LAN_IP}/tcp/4001/p2p/{OTHER}/p2p/{OTHER}",  # twice
        "not a multiaddr",
    ],
)
def test_build_txt_rejects_bad_addresses(bad: str) -> None:
    with pytest.raises(InvalidMultiaddrError):
        build_txt([bad])


def test_build_txt_rejects_mixed_peers() -> None:
    with pytest.raises(InvalidMultiaddrError, match="names peer"):
        build_txt([f"/ip4/{LAN_IP}/tcp/1/p2p/{OTHER}", f"/ip4/{LAN_IP}/tcp/2/p2p/{ME}"])


def test_build_txt_caps() -> None:
    addrs = [f"/ip4/{LAN_IP}/tcp/{1000 + i}/p2p/{OTHER}" for i in range(40)]
    assert len(build_txt(addrs, max_bytes=100_000)) == MAX_ADDRS_PER_PEER
    assert sum(1 + len(t) for t in build_txt(addrs)) <= MAX_TXT_BYTES  # one Ethernet frame
    assert len(build_txt(addrs, max_addrs=3)) == 3
    one = len(build_txt(addrs[:1])[0]) + 1
    assert len(build_txt(addrs, max_bytes=2 * one)) == 2
    long = f"/dns4/{'x' * 63}.{'y' * 63}.{'z' * 63}.example/tcp/1/p2p/{OTHER}"
    assert build_txt([long]) == []  # over 255 bytes: cannot be one TXT string


def test_txt_rdata() -> None:
    assert encode_txt_rdata([]) == b"\x00"
    assert decode_txt_rdata(b"\x03abc\x02de") == [b"abc", b"de"]
    assert decode_txt_rdata(b"\x03abc\x09de") == [b"abc"]  # truncated last string
    with pytest.raises(ValueError):
        encode_txt_rdata([b"x" * 256])


def test_parse_ignores_malformed() -> None:
    good = f"dnsaddr=/ip4/{LAN_IP}/tcp/4001/p2p/{OTHER}"
    strings: list[bytes | str] = [
        b"dnsaddr=not-a-multiaddr",
        f"dnsaddr=/ip4/{LAN_IP}/tcp/1",  # no peer id
        f"dnsaddr=/ip4/{LAN_IP}/tcp/2/p2p/{OTHER}/p2p/{OTHER}",
        f"dnsaddr=/ip4/0.0.0.0/tcp/3/p2p/{OTHER}",
        f"dnsaddr=/ip4/{LAN_IP}/tcp/4/p2p/notapeerid",
        f"dnsaddr=/ip4/{LAN_IP}/tcp/99999/p2p/{OTHER}",
        b"dnsaddr=/ip4/\xff\xfe/tcp/5",
        "foo=bar",
        "dnsaddr",
        "",
        f"DNSADDR=/ip4/{LAN_IP}/tcp/4002/p2p/{OTHER}",  # TXT keys are case-insensitive
        good,
        good,
    ]
    assert parse_dnsaddr_txt(strings) == {
        OTHER: [f"/ip4/{LAN_IP}/tcp/4002/p2p/{OTHER}", f"/ip4/{LAN_IP}/tcp/4001/p2p/{OTHER}"]
    }


def test_parse_filters_own_peer_id() -> None:
    strings = [f"dnsaddr=/ip4/{LAN_IP}/tcp/1/p2p/{ME}", f"dnsaddr=/ip4/{LAN_IP}/tcp/1/p2p/{OTHER}"]
    assert set(parse_dnsaddr_txt(strings, own_peer_id=ME)) == {OTHER}
    assert set(parse_dnsaddr_txt(strings)) == {ME, OTHER}


def test_parse_caps() -> None:
    many_addrs = [f"dnsaddr=/ip4/{LAN_IP}/tcp/{1000 + i}/p2p/{OTHER}" for i in range(100)]
    assert len(parse_dnsaddr_txt(many_addrs)[OTHER]) == MAX_ADDRS_PER_PEER
    peers = [dnswire.fake_peer_id() for _ in range(300)]
    many_peers = [f"dnsaddr=/ip4/{LAN_IP}/tcp/1/p2p/{p}" for p in peers]
    parsed = parse_dnsaddr_txt(many_peers)
    assert list(parsed) == peers[:MAX_PEERS]
    assert list(parse_dnsaddr_txt(many_peers, max_peers=1)) == peers[:1]


# ----------------------------------------------------------------- interfaces

AVAILABLE = {"lo": "127.0.0.1", "eth0": "192.168.7.10", "wlan0": "10.1.2.3", "bad": "x"}


def test_interfaces_loopback_only_is_off(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger=mdns.__name__):
        assert mdns_interfaces(["/ip4/127.0.0.1/tcp/4001"], AVAILABLE) == []
        assert mdns_interfaces(["/ip4/127.0.0.2/tcp/1", "/ip6/::1/tcp/1"], AVAILABLE) == []
    assert "loopback only" in caplog.text


def test_interfaces_wildcard_is_every_non_loopback_interface() -> None:
    assert mdns_interfaces(["/ip4/0.0.0.0/tcp/4001"], AVAILABLE) == ["192.168.7.10", "10.1.2.3"]
    assert mdns_interfaces(["/ip4/0.0.0.0/tcp/4001"], {"lo": "127.0.0.1"}) == []


def test_interfaces_specific_ip() -> None:
    assert mdns_interfaces(["/ip4/10.1.2.3/tcp/4001"], AVAILABLE) == ["10.1.2.3"]
    listen = ["/ip4/10.1.2.3/tcp/4001", "/ip4/10.1.2.3/udp/4001/quic-v1", "/ip4/127.0.0.1/tcp/1"]
    assert mdns_interfaces(listen, AVAILABLE) == ["10.1.2.3"]
    both = ["/ip4/10.1.2.3/tcp/4001", "/ip4/0.0.0.0/udp/4001/quic-v1"]
    assert mdns_interfaces(both, AVAILABLE) == ["10.1.2.3", "192.168.7.10"]


def test_interfaces_ignore_ipv6_and_dns(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger=mdns.__name__):
        assert mdns_interfaces(["/ip6/::/tcp/1", "/dns4/x.example/tcp/1"], AVAILABLE) == []
        assert mdns_interfaces([], AVAILABLE) == []
    assert "no IPv4 listen address" in caplog.text


def test_local_ipv4_interfaces_excludes_loopback() -> None:
    found = local_ipv4_interfaces()  # reads addresses only: nothing is sent
    assert "127.0.0.1" not in found.values()
    for ip in found.values():
        socket.inet_aton(ip)


def test_local_ipv4_interfaces_filters_by_flags(monkeypatch: pytest.MonkeyPatch) -> None:
    def adapter(name: str, *ips: str | tuple[str, int, int]) -> ifaddr.Adapter:
        return ifaddr.Adapter(name, name, [ifaddr.IP(ip, 24, name) for ip in ips])

    up, loop, mcast = 0x1, 0x8, 0x1000
    flags = {"eth0": up | mcast, "lo": up | loop | mcast, "wg0": up, "eth1": mcast}
    flags |= {"eth2": up | mcast, "v6only": up | mcast}
    adapters = [
        adapter("lo", "127.0.0.1"),
        adapter("eth0", ("fe80::1", 0, 2), "192.168.7.10", "192.168.7.11"),  # first v4 wins
        adapter("wg0", "10.8.0.1"),  # no multicast: not used
        adapter("eth1", "10.9.0.1"),  # down
        adapter("eth2", "10.1.2.3"),
        adapter("v6only", ("fd00::1", 0, 0)),
        adapter("gone", "10.3.3.3"),  # vanished: no flags
    ]
    monkeypatch.setattr(ifaddr, "get_adapters", lambda: adapters)
    monkeypatch.setattr(interfaces, "_flags", flags.get)
    assert interfaces.local_ipv4_interfaces() == {"eth0": "192.168.7.10", "eth2": "10.1.2.3"}


def test_interface_flags_are_read_from_sysfs() -> None:
    assert interfaces._flags("lo") in (None, *range(0x8, 0x10000))  # loopback bit if present
    assert interfaces._flags("../etc") is None
    assert interfaces._flags("") is None


def test_parse_packet_shapes() -> None:
    query = packets.parse_packet(dnswire.rust_query(), SRC)
    assert query == packets.Query(asks_service=True, known={})
    peer = dnswire.fake_peer_id()
    addr = f"/ip4/192.168.7.20/tcp/1/p2p/{peer}"
    response = packets.parse_packet(dnswire.js_response("J" * 32, [addr], ttl=7), SRC)
    instance = f"{'J' * 32}.{SERVICE_NAME}".lower()
    assert response == packets.Response(
        {instance: 7}, {instance: ([f"dnsaddr={addr}".encode()], 7)}
    )
    other_opcode = dnswire.header(0, 0x0800, 1, 0, 0, 0) + dnswire.question(dnswire.SERVICE)
    assert packets.parse_packet(other_opcode, SRC) is None


# ------------------------------------------------------------ service (no I/O)


def make_service(calls: list[tuple[str, list[str]]] | None = None, **kwargs: object) -> MdnsService:
    def on_peer(peer: str, addrs: list[str]) -> None:
        if calls is not None:
            calls.append((peer, addrs))

    options: dict[str, object] = {
        "peer_id": ME,
        "addrs": [f"/ip4/{LAN_IP}/tcp/4001/p2p/{ME}", f"/ip4/127.0.0.1/tcp/4001/p2p/{ME}"],
        "interfaces": [LAN_IP],
        "on_peer": on_peer,
    }
    options.update(kwargs)
    return MdnsService(**options)  # type: ignore[arg-type]


@pytest.fixture
def iface_sock() -> Iterator[socket.socket]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)  # never bound, never used
    yield sock
    sock.close()


def attach(service: MdnsService, sock: socket.socket) -> Link:
    """Make the service believe it runs on LAN_IP, without opening any socket."""
    iface = Link(LAN_IP, sock, service._txt_for(LAN_IP))
    service._links = [iface]
    service._running = True
    return iface


def test_service_validates_options() -> None:
    with pytest.raises(ConfigError):
        make_service(peer_id="nope")
    with pytest.raises(ConfigError):
        make_service(interfaces=["eth0"])
    with pytest.raises(ConfigError):
        make_service(query_interval=0.5)
    with pytest.raises(ConfigError):
        make_service(query_interval=float("nan"))


def test_service_announces_only_addresses_of_the_interface() -> None:
    service = make_service(
        addrs=[
            f"/ip4/127.0.0.1/tcp/4001/p2p/{ME}",
            f"/ip4/{LAN_IP}/tcp/4001/p2p/{ME}",
            f"/ip4/10.9.9.9/tcp/4001/p2p/{ME}",  # another interface
            f"/ip4/{LAN_IP}/udp/4001/quic-v1",  # bare: ours
            f"/ip4/{LAN_IP}/tcp/4002/p2p/{OTHER}",  # not ours: skipped
            f"/dns4/me.example/tcp/443/wss/p2p/{ME}",
        ]
    )
    assert service._txt_for(LAN_IP) == [
        f"dnsaddr=/ip4/{LAN_IP}/tcp/4001/p2p/{ME}".encode(),
        f"dnsaddr=/ip4/{LAN_IP}/udp/4001/quic-v1/p2p/{ME}".encode(),
        f"dnsaddr=/dns4/me.example/tcp/443/wss/p2p/{ME}".encode(),
    ]
    assert service._txt_for("10.9.9.9") == [
        f"dnsaddr=/ip4/10.9.9.9/tcp/4001/p2p/{ME}".encode(),
        f"dnsaddr=/dns4/me.example/tcp/443/wss/p2p/{ME}".encode(),
    ]


def test_response_packet_layout() -> None:
    service = make_service()
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        iface = Link(LAN_IP, sock, service._txt_for(LAN_IP))
        [packet] = service._response(iface)
    finally:
        sock.close()
    msg = dnswire.decode(packet)
    instance = f"{service.peer_name}.{dnswire.SERVICE}"
    assert (msg.id, msg.flags, msg.questions, msg.authorities) == (0, 0x8400, [], [])
    assert [(r.name, r.type, r.cls, r.ttl, r.target) for r in msg.answers] == [
        (dnswire.SERVICE, 12, 1, 120, instance)
    ]
    [txt] = msg.additionals
    assert (txt.name, txt.type, txt.cls, txt.ttl) == (instance, 16, 0x8001, 120)
    assert txt.strings == [f"dnsaddr=/ip4/{LAN_IP}/tcp/4001/p2p/{ME}".encode()]
    [query] = packets.build_query()
    assert dnswire.decode(query).questions == [(dnswire.SERVICE, 12, 1)]


@pytest.mark.anyio
async def test_rust_and_js_responses_are_discovered(iface_sock: socket.socket) -> None:
    calls: list[tuple[str, list[str]]] = []
    service = make_service(calls)
    iface = attach(service, iface_sock)
    rust, js = dnswire.fake_peer_id(), dnswire.fake_peer_id()
    rust_addrs = [f"/ip4/192.168.7.20/tcp/4001/p2p/{rust}", f"/ip4/127.0.0.1/tcp/1/p2p/{rust}"]
    service._handle_packet(iface, dnswire.rust_response("R" * 40, rust_addrs), ("1.2.3.4", 49152))
    js_addrs = [f"/ip4/192.168.7.21/tcp/4001/p2p/{js}"]
    service._handle_packet(iface, dnswire.js_response("J" * 32, js_addrs), SRC)
    assert calls == [(rust, rust_addrs[:1]), (js, js_addrs)]  # loopback from the LAN: dropped
    assert service.peers == {rust: rust_addrs[:1], js: js_addrs}

    # Same set again: no new call; a changed set: a call; goodbye: gone, no call.
    service._handle_packet(iface, dnswire.js_response("J" * 32, js_addrs), SRC)
    assert len(calls) == 2
    js_more = [*js_addrs, f"/ip4/192.168.7.21/udp/4001/quic-v1/p2p/{js}"]
    service._handle_packet(iface, dnswire.js_response("J" * 32, js_more), SRC)
    assert calls[-1] == (js, js_more)
    service._handle_packet(iface, dnswire.js_response("J" * 32, js_more, ttl=0), SRC)
    assert set(service.peers) == {rust}
    assert len(calls) == 3


@pytest.mark.anyio
async def test_ignores_itself_and_hostile_packets(iface_sock: socket.socket) -> None:
    calls: list[tuple[str, list[str]]] = []
    service = make_service(calls)
    iface = attach(service, iface_sock)
    other = dnswire.fake_peer_id()
    hostile = [
        b"",
        b"\xff" * 7,
        dnswire.header(0, 0x8400, 0, 65535, 65535, 65535),
        dnswire.header(0, 0x8400, 0, 1, 0, 0) + b"\xc0\x0c" + b"\0" * 10,  # compression loop
        dnswire.rust_response("S" * 33, [f"/ip4/192.168.7.20/tcp/1/p2p/{ME}"]),  # our own id
        # Another peer under our own instance name.
        dnswire.rust_response(service.peer_name, [f"/ip4/192.168.7.20/tcp/1/p2p/{other}"]),
        # A response with a non-zero opcode.
        dnswire.header(0, 0x8400 | 0x0800, 0, 1, 0, 0)
        + dnswire.record(dnswire.SERVICE, 12, 1, 120, dnswire.encode_name("x." + dnswire.SERVICE)),
    ]
    for packet in hostile:
        service._handle_packet(iface, packet, SRC)
    assert calls == [] and service.peers == {}


@pytest.mark.anyio
async def test_peer_table_is_capped(iface_sock: socket.socket) -> None:
    service = make_service()
    iface = attach(service, iface_sock)
    for i in range(MAX_PEERS + 20):
        peer = dnswire.fake_peer_id()
        packet = dnswire.rust_response(f"{'P' * 32}{i}", [f"/ip4/192.168.7.20/tcp/1/p2p/{peer}"])
        service._handle_packet(iface, packet, SRC)
    assert len(service.peers) == MAX_PEERS


@pytest.mark.anyio
async def test_peers_expire_with_their_ttl(iface_sock: socket.socket) -> None:
    service = make_service()
    iface = attach(service, iface_sock)
    peer = dnswire.fake_peer_id()
    packet = dnswire.rust_response("E" * 32, [f"/ip4/192.168.7.20/tcp/1/p2p/{peer}"], ttl=1)
    service._handle_packet(iface, packet, SRC)
    assert set(service.peers) == {peer}
    await anyio.sleep(1.05)
    assert service.peers == {}


@pytest.mark.anyio
async def test_callback_errors_are_logged(
    iface_sock: socket.socket, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(peer: str, addrs: list[str]) -> None:
        raise RuntimeError("sync boom")

    async def broken_async(peer: str, addrs: list[str]) -> None:
        raise RuntimeError("async boom")

    for callback in (broken, broken_async):
        service = make_service(on_peer=callback)
        iface = attach(service, iface_sock)
        peer = dnswire.fake_peer_id()
        packet = dnswire.rust_response("C" * 32, [f"/ip4/192.168.7.20/tcp/1/p2p/{peer}"])
        async with anyio.create_task_group() as tg:
            service._tg = tg
            service._handle_packet(iface, packet, SRC)
        assert set(service.peers) == {peer}
    assert "sync boom" in caplog.text and "async boom" in caplog.text


@pytest.mark.anyio
async def test_queries_request_a_response_unless_known(iface_sock: socket.socket) -> None:
    service = make_service()
    iface = attach(service, iface_sock)
    service._handle_packet(iface, dnswire.rust_query(), ("192.168.7.20", 40000))
    assert iface.wake.is_set()
    assert 0.02 <= iface.delay <= 0.12

    iface.wake = anyio.Event()
    other_question = dnswire.header(0, 0, 1, 0, 0, 0) + dnswire.question("_other._udp.local")
    service._handle_packet(iface, other_question, SRC)
    assert not iface.wake.is_set()

    instance = f"{service.peer_name}.{SERVICE_NAME}"
    known = (
        dnswire.header(0, 0, 1, 1, 0, 0)
        + dnswire.question(dnswire.SERVICE)
        + dnswire.record(dnswire.SERVICE, 12, 1, 100, dnswire.encode_name(instance))
    )
    service._handle_packet(iface, known, SRC)
    assert not iface.wake.is_set()  # known-answer suppression


@pytest.mark.anyio
async def test_update_addrs_reannounces(iface_sock: socket.socket) -> None:
    service = make_service()
    iface = attach(service, iface_sock)
    service.update_addrs([f"/ip4/{LAN_IP}/tcp/4001/p2p/{ME}"])  # same LAN set
    assert not iface.wake.is_set()
    service.update_addrs([f"/ip4/{LAN_IP}/tcp/4001/p2p/{ME}", f"/ip4/{LAN_IP}/tcp/4002/p2p/{ME}"])
    assert iface.wake.is_set() and iface.delay == 0.0
    assert len(iface.txt) == 2


@pytest.mark.anyio
async def test_run_without_interfaces_is_idle() -> None:
    service = make_service(interfaces=[])
    with anyio.move_on_after(0.2) as scope:
        async with anyio.create_task_group() as tg:
            await tg.start(service.run)
    assert scope.cancelled_caught
    assert service.peers == {}


@pytest.mark.anyio
async def test_update_addrs_withdraws_when_nothing_is_left(
    iface_sock: socket.socket, monkeypatch: pytest.MonkeyPatch
) -> None:
    service = make_service()
    iface = attach(service, iface_sock)
    sent: list[list[bytes]] = []
    monkeypatch.setattr(service, "_send", lambda _iface, packets: sent.append(packets))
    service.update_addrs([f"/ip4/127.0.0.1/tcp/4001/p2p/{ME}"])  # none left on the LAN
    [[goodbye]] = sent
    msg = dnswire.decode(goodbye)
    assert msg.answers[0].ttl == 0 and msg.additionals[0].ttl == 0
    assert msg.additionals[0].strings == [f"dnsaddr=/ip4/{LAN_IP}/tcp/4001/p2p/{ME}".encode()]
    assert iface.txt == [] and not iface.wake.is_set()


@pytest.mark.anyio
async def test_own_looped_back_query_is_not_answered(iface_sock: socket.socket) -> None:
    service = make_service()
    iface = attach(service, iface_sock)
    [query] = packets.build_query()
    iface.own_queries, iface.own_queries_until = 1, anyio.current_time() + 1.0
    service._handle_packet(iface, query, (LAN_IP, 5353))  # our copy: skipped once
    assert not iface.wake.is_set() and iface.own_queries == 0
    service._handle_packet(iface, query, (LAN_IP, 5353))  # another node on this host
    assert iface.wake.is_set()

    iface.wake = anyio.Event()
    iface.own_queries, iface.own_queries_until = 1, anyio.current_time() - 0.1
    service._handle_packet(iface, query, (LAN_IP, 5353))  # too late to be ours
    assert iface.wake.is_set() and iface.own_queries == 0


@pytest.mark.anyio
async def test_removals_are_reported_on_goodbye_and_expiry(iface_sock: socket.socket) -> None:
    removed: list[str] = []
    service = make_service(on_peer_removed=removed.append)
    iface = attach(service, iface_sock)
    bye, expires, stays = dnswire.fake_peer_id(), dnswire.fake_peer_id(), dnswire.fake_peer_id()
    bye_addrs = [f"/ip4/192.168.7.21/tcp/1/p2p/{bye}"]
    service._handle_packet(iface, dnswire.js_response("B" * 32, bye_addrs), SRC)
    short = [f"/ip4/192.168.7.22/tcp/1/p2p/{expires}"]
    service._handle_packet(iface, dnswire.rust_response("X" * 32, short, ttl=1), SRC)
    long = [f"/ip4/192.168.7.23/tcp/1/p2p/{stays}"]
    service._handle_packet(iface, dnswire.rust_response("S" * 32, long), SRC)
    assert set(service.peers) == {bye, expires, stays} and removed == []

    service._handle_packet(iface, dnswire.js_response("B" * 32, bye_addrs, ttl=0), SRC)
    assert removed == [bye]
    service._handle_packet(iface, dnswire.js_response("B" * 32, bye_addrs, ttl=0), SRC)
    assert removed == [bye]  # once

    await anyio.sleep(1.05)
    assert set(service.peers) == {stays}  # reading the table expires the stale records
    assert removed == [bye, expires]


@pytest.mark.anyio
async def test_async_removal_callback_runs_in_the_service(iface_sock: socket.socket) -> None:
    removed: list[str] = []

    async def on_removed(peer: str) -> None:
        removed.append(peer)

    service = make_service(on_peer_removed=on_removed)
    iface = attach(service, iface_sock)
    peer = dnswire.fake_peer_id()
    addrs = [f"/ip4/192.168.7.21/tcp/1/p2p/{peer}"]
    async with anyio.create_task_group() as tg:
        service._tg = tg
        service._handle_packet(iface, dnswire.js_response("A" * 32, addrs), SRC)
        service._handle_packet(iface, dnswire.js_response("A" * 32, addrs, ttl=0), SRC)
    assert removed == [peer]
