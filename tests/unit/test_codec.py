"""The p2pd control protocol's bytes: delimited messages, multiaddrs, the fork's requests."""

from __future__ import annotations

import pytest

from fabstir_sidecar.core.errors import ControlError, InvalidPeerIdError
from fabstir_sidecar.core.multiaddr import PeerAddrs
from fabstir_sidecar.core.peer_id import PeerId
from fabstir_sidecar.core.varint import encode_uvarint
from fabstir_sidecar.daemon import p2pd_pb2 as pb
from fabstir_sidecar.daemon.codec import (
    addrs_from_bytes,
    multiaddr_to_bytes,
    parse,
    peer_addrs,
    request,
    split_delimited,
    unix_multiaddr_bytes,
)

# --------------------------------------------------------------- delimited messages


def test_split_delimited_takes_one_message_and_keeps_the_rest() -> None:
    buffer = bytearray(b"\x03abc\x02de")
    assert split_delimited(buffer, limit=100) == b"abc"
    assert buffer == bytearray(b"\x02de")
    assert split_delimited(buffer, limit=100) == b"de"
    assert buffer == bytearray()


@pytest.mark.parametrize("partial", [b"", b"\x05ab", b"\x80", b"\xac\x02" + b"x" * 299])
def test_split_delimited_waits_for_a_whole_message(partial: bytes) -> None:
    buffer = bytearray(partial)
    assert split_delimited(buffer, limit=1000) is None
    assert buffer == bytearray(partial)  # nothing consumed


def test_split_delimited_multibyte_length() -> None:
    body = b"y" * 300
    buffer = bytearray(encode_uvarint(300) + body)
    assert split_delimited(buffer, limit=1000) == body


def test_split_delimited_overlong_varint_is_a_control_error() -> None:
    with pytest.raises(ControlError, match="malformed varint"):
        split_delimited(bytearray(b"\xff" * 9), limit=100)


def test_split_delimited_over_the_limit_is_a_control_error() -> None:
    with pytest.raises(ControlError, match="too large"):
        split_delimited(bytearray(encode_uvarint(101)), limit=100)


def test_parse_bad_protobuf_is_a_control_error() -> None:
    with pytest.raises(ControlError, match="malformed protobuf"):
        parse(pb.Response(), b"\xff\xff\xff")


# --------------------------------------------------------------------- multiaddrs


def test_unix_multiaddr_keeps_the_leading_slash() -> None:
    path = b"/tmp/x.sock"
    encoded = unix_multiaddr_bytes("/tmp/x.sock")
    assert encoded == b"\x90\x03" + encode_uvarint(len(path)) + path
    assert encoded == b"\x90\x03\x0b/tmp/x.sock"
    assert multiaddr_to_bytes("/unix/tmp/x.sock") == encoded


def test_unix_multiaddr_long_path_uses_a_multibyte_length() -> None:
    path = "/" + "d" * 200 + "/handlers.sock"
    encoded = unix_multiaddr_bytes(path)
    assert encoded == b"\x90\x03" + encode_uvarint(len(path)) + path.encode()
    assert len(encode_uvarint(len(path))) == 2


def test_unix_multiaddr_rejects_relative_paths() -> None:
    with pytest.raises(ValueError):
        unix_multiaddr_bytes("tmp/x.sock")


def test_addrs_from_bytes_skips_what_it_cannot_decode() -> None:
    tcp = multiaddr_to_bytes("/ip4/127.0.0.1/tcp/4001")
    assert addrs_from_bytes([tcp, b"\xff\xff\xff", tcp]) == (
        "/ip4/127.0.0.1/tcp/4001",
        "/ip4/127.0.0.1/tcp/4001",
    )


# -------------------------------------------------------------------------- peers

ED25519_ID = "12D3KooWHsHHcDmBi73RNPUqSZikF87QD8ZhAoHeuSq8YmRzXn5g"
RSA_ID = "QmYyQSo1c1Ym7orWxLYvCrM2EmxFTANf8wXmmE7DWjhx5N"


@pytest.mark.parametrize("peer_id", [ED25519_ID, RSA_ID])
def test_peer_addrs_from_the_daemons_peer_info(peer_id: str) -> None:
    raw = pb.PeerInfo(
        id=PeerId.parse(peer_id).to_bytes(), addrs=[multiaddr_to_bytes("/ip4/10.0.0.1/tcp/1")]
    )
    found = peer_addrs(raw)
    assert found == PeerAddrs(PeerId.parse(peer_id), ("/ip4/10.0.0.1/tcp/1",))
    assert isinstance(found.peer_id, PeerId)


def test_peer_addrs_rejects_a_bad_peer_id() -> None:
    with pytest.raises(InvalidPeerIdError):
        peer_addrs(pb.PeerInfo(id=b"\x12\x03abc"))


# ------------------------------------------------------ the fork's handler requests

ADDR = b"\x90\x03\x0b/tmp/x.sock"


@pytest.mark.parametrize("balanced", [False, True])
def test_stream_handler_request_carries_the_forks_balanced_field(balanced: bool) -> None:
    # hivemind's p2pd requires StreamHandlerRequest.balanced (field 3, varint).
    handler = pb.StreamHandlerRequest(addr=ADDR, proto=["/p/1"], balanced=balanced)
    raw = request(type=pb.Request.STREAM_HANDLER, streamHandler=handler)
    inner = b"\x0a\x0e" + ADDR + b"\x12\x04/p/1" + b"\x18" + bytes([balanced])
    body = b"\x08\x03" + b"\x22" + bytes([len(inner)]) + inner  # type 3, field 4
    assert raw == bytes([len(body)]) + body


def test_remove_stream_handler_request_is_the_forks_type_10_field_9() -> None:
    remove = pb.RemoveStreamHandlerRequest(addr=ADDR, proto=["/p/1"])
    raw = request(type=pb.Request.REMOVE_STREAM_HANDLER, removeStreamHandler=remove)
    inner = b"\x0a\x0e" + ADDR + b"\x12\x04/p/1"  # no balanced flag on removal
    body = b"\x08\x0a" + bytes([9 << 3 | 2, len(inner)]) + inner
    assert raw == bytes([len(body)]) + body


def test_a_stream_handler_request_without_balanced_is_refused_locally() -> None:
    # The field is required in the fork's schema: forgetting it fails here, not in p2pd.
    handler = pb.StreamHandlerRequest(addr=ADDR, proto=["/p/1"])
    with pytest.raises(Exception, match="balanced"):
        request(type=pb.Request.STREAM_HANDLER, streamHandler=handler)
