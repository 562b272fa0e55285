"""Pure parts of the p2pd control adapter: varints, multiaddr bytes, requests, error mapping."""

from __future__ import annotations

import pytest
from google.protobuf import unknown_fields
from p2pclient.pb import p2pd_pb2

from fabstir_sidecar.core.errors import (
    ConfigError,
    ControlError,
    FabstirError,
    PeerUnreachableError,
    ProtocolNotSupportedError,
)
from fabstir_sidecar.core.peer_id import PeerId
from fabstir_sidecar.core.varint import decode_uvarint as decode_varint
from fabstir_sidecar.core.varint import encode_uvarint as encode_varint
from fabstir_sidecar.daemon.codec import handler_request as _handler_request
from fabstir_sidecar.daemon.codec import split_delimited, unix_multiaddr_bytes
from fabstir_sidecar.daemon.errors import classify_daemon_error


def peer_id_to_bytes(peer_id: str, *, name: str = "peer_id") -> bytes:
    return PeerId.parse(peer_id, name=name).to_bytes()


peer_id_from_bytes = PeerId.from_bytes

# Real peer ids: an Ed25519 one (identity multihash) and an RSA one (sha2-256 multihash).
ED25519_ID = "12D3KooWHsHHcDmBi73RNPUqSZikF87QD8ZhAoHeuSq8YmRzXn5g"
RSA_ID = "QmYyQSo1c1Ym7orWxLYvCrM2EmxFTANf8wXmmE7DWjhx5N"


# ------------------------------------------------------------------------- varints


@pytest.mark.parametrize(
    "value",
    [0, 1, 127, 128, 255, 300, 16383, 16384, 2**21, 2**28 - 1, 2**32, 2**56, 2**63 - 1],
)
def test_varint_round_trip(value: int) -> None:
    encoded = encode_varint(value)
    assert decode_varint(encoded) == (value, len(encoded))
    # Trailing bytes are not consumed.
    assert decode_varint(encoded + b"\x05\x06") == (value, len(encoded))


def test_varint_known_encodings() -> None:
    assert encode_varint(0) == b"\x00"
    assert encode_varint(1) == b"\x01"
    assert encode_varint(127) == b"\x7f"
    assert encode_varint(128) == b"\x80\x01"
    assert encode_varint(300) == b"\xac\x02"
    assert encode_varint(400) == b"\x90\x03"


def test_varint_rejects_negative() -> None:
    with pytest.raises(ValueError):
        encode_varint(-1)


@pytest.mark.parametrize("value", [128, 300, 2**21, 2**40])
def test_decode_varint_partial_input_is_none(value: int) -> None:
    encoded = encode_varint(value)
    for cut in range(len(encoded)):
        assert decode_varint(encoded[:cut]) is None


def test_decode_varint_empty_is_none() -> None:
    assert decode_varint(b"") is None
    assert decode_varint(bytearray()) is None


def test_decode_varint_overlong_is_a_control_error() -> None:
    with pytest.raises(ControlError):
        split_delimited(bytearray(b"\xff" * 9), limit=100)


# --------------------------------------------------------------------- multiaddrs


def test_unix_multiaddr_keeps_the_leading_slash() -> None:
    path = b"/tmp/x.sock"
    encoded = unix_multiaddr_bytes("/tmp/x.sock")
    assert encoded == b"\x90\x03" + encode_varint(len(path)) + path
    assert encoded == b"\x90\x03\x0b/tmp/x.sock"


def test_unix_multiaddr_long_path_uses_a_multibyte_length() -> None:
    path = "/" + "d" * 200 + "/handlers.sock"
    encoded = unix_multiaddr_bytes(path)
    assert encoded == b"\x90\x03" + encode_varint(len(path)) + path.encode()
    assert len(encode_varint(len(path))) == 2


def test_unix_multiaddr_rejects_relative_paths() -> None:
    with pytest.raises(ValueError):
        unix_multiaddr_bytes("tmp/x.sock")


# ------------------------------------------------------------------- handler requests


def _field3(message: object) -> list[tuple[int, int, object]]:
    return [(f.field_number, f.wire_type, f.data) for f in unknown_fields.UnknownFieldSet(message)]


@pytest.mark.parametrize("balanced", [False, True])
def test_handler_request_has_balanced_field_and_parses_back(balanced: bool) -> None:
    addr = unix_multiaddr_bytes("/run/fabstir/handlers.sock")
    raw = _handler_request(
        p2pd_pb2.Request.STREAM_HANDLER,
        4,
        addr,
        ["/fabstir-llm/1.0.0/message", "/other/1"],
        balanced=balanced,
    )
    request = p2pd_pb2.Request()
    request.ParseFromString(raw)
    assert request.type == p2pd_pb2.Request.STREAM_HANDLER
    assert request.HasField("streamHandler")
    assert request.streamHandler.addr == addr
    assert list(request.streamHandler.proto) == ["/fabstir-llm/1.0.0/message", "/other/1"]
    # Field 3 (balanced, varint) is unknown to p2pclient's schema but preserved.
    assert _field3(request.streamHandler) == [(3, 0, int(balanced))]
    inner = request.streamHandler.SerializeToString()
    assert inner.endswith(b"\x18" + (b"\x01" if balanced else b"\x00"))


def test_remove_handler_request_without_balanced() -> None:
    # Type 10 / field 9 are hivemind's REMOVE_STREAM_HANDLER, which p2pclient does not know:
    # check the wire bytes, then the nested StreamHandlerRequest with p2pclient's schema.
    addr = unix_multiaddr_bytes("/tmp/x.sock")
    raw = _handler_request(10, 9, addr, ["/p/1"], balanced=None)
    assert raw[:2] == b"\x08\x0a"  # field 1 (type), varint 10
    assert raw[2] == 9 << 3 | 2  # field 9, length-delimited
    size, used = decode_varint(raw[3:]) or (0, 0)
    inner_bytes = raw[3 + used :]
    assert len(inner_bytes) == size
    inner = p2pd_pb2.StreamHandlerRequest()
    inner.ParseFromString(inner_bytes)
    assert inner.addr == addr
    assert list(inner.proto) == ["/p/1"]
    assert _field3(inner) == []  # no balanced flag on removal
    # p2pclient keeps the unknown request type as an unknown field, not as a valid type.
    request = p2pd_pb2.Request()
    request.ParseFromString(raw)
    assert (1, 0, 10) in _field3(request)


# ------------------------------------------------------------------------- peer ids


@pytest.mark.parametrize("peer_id", [ED25519_ID, RSA_ID])
def test_peer_id_to_bytes_accepts_real_ids(peer_id: str) -> None:
    raw = peer_id_to_bytes(peer_id)
    assert peer_id_from_bytes(raw) == peer_id


def test_peer_id_bytes_shapes() -> None:
    ed = peer_id_to_bytes(ED25519_ID)
    assert ed[0] == 0x00 and ed[1] == len(ed) - 2
    rsa = peer_id_to_bytes(RSA_ID)
    assert rsa[0] == 0x12 and rsa[1] == 32 and len(rsa) == 34


@pytest.mark.parametrize(
    "garbage",
    [
        "",
        "not a peer id",
        "0OIl",  # characters outside base58
        "12D3KooW",  # truncated
        ED25519_ID[:-3],
        ED25519_ID + "abc",
        "QmYyQSo1c1Ym7orWxLYvCrM2EmxFTANf8wXmmE7DWjhx5",  # sha2-256 one char short
        "pééer",
        "/ip4/127.0.0.1/tcp/1",
    ],
)
def test_peer_id_to_bytes_rejects_garbage(garbage: str) -> None:
    with pytest.raises(ConfigError) as info:
        peer_id_to_bytes(garbage, name="target")
    assert isinstance(info.value, FabstirError)
    assert info.value.name == "target"


# -------------------------------------------------------------------- error mapping


def test_classify_protocol_not_supported() -> None:
    exc = classify_daemon_error(
        "failed to negotiate protocol: protocols not supported: [/x]",
        peer_id=ED25519_ID,
        protocols=["/x"],
    )
    assert type(exc) is ProtocolNotSupportedError
    assert exc.peer_id == ED25519_ID
    assert exc.protocol == "/x"
    assert "/x" in str(exc)


def test_classify_all_dials_failed_is_unreachable_on_one_line() -> None:
    message = (
        "failed to dial: failed to dial 12D3KooWHsHH: all dials failed\n"
        "  * [/ip4/127.0.0.1/tcp/9] dial tcp4 127.0.0.1:9: connect: connection refused"
    )
    exc = classify_daemon_error(message, peer_id=ED25519_ID)
    assert type(exc) is PeerUnreachableError
    assert exc.peer_id == ED25519_ID
    text = str(exc)
    assert "\n" not in text
    assert "connection refused" in text
    assert "/ip4/127.0.0.1/tcp/9" in text


def test_classify_routing_failure_is_unreachable() -> None:
    exc = classify_daemon_error("failed to find any peer in table", peer_id=ED25519_ID)
    assert type(exc) is PeerUnreachableError


@pytest.mark.parametrize(
    "message",
    ["dial backoff", "context deadline exceeded", "no addresses", "dial to self attempted"],
)
def test_classify_other_dial_failures(message: str) -> None:
    assert type(classify_daemon_error(message)) is PeerUnreachableError


@pytest.mark.parametrize(
    "message", ["something else entirely", "unexpected request type", "", "proto: bad wire"]
)
def test_classify_anything_else_is_control_error(message: str) -> None:
    exc = classify_daemon_error(message, peer_id=ED25519_ID)
    assert type(exc) is ControlError
    assert isinstance(exc, FabstirError)
