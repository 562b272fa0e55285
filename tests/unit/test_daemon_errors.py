"""p2pd's error texts mapped into the exception tree."""

from __future__ import annotations

import pytest

from fabstir_sidecar.core.errors import (
    ControlError,
    FabstirError,
    PeerUnreachableError,
    ProtocolNotSupportedError,
)
from fabstir_sidecar.daemon.errors import classify_daemon_error

ED25519_ID = "12D3KooWHsHHcDmBi73RNPUqSZikF87QD8ZhAoHeuSq8YmRzXn5g"


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
