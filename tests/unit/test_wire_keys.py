"""Unit tests for fabstir_sidecar.wire.keys (pure: no I/O)."""

from __future__ import annotations

import base64
import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fabstir_sidecar.core.varint import encode_uvarint
from fabstir_sidecar.wire.keys import (
    ANY_HOST_KEY,
    CID_VERSION,
    JSON_MULTICODEC,
    SHA2_256,
    model_cid,
)

# Pinned from an independent implementation (PROTOCOL.md section 4).
PINNED = {
    "llama-3.2-1b-instruct": "bagaaieraa64w6m7747utd7mecp2suu23xc2l5ic6aevldjd7sqri6gnap74a",
    "llm-inference": "bagaaieralu6skurcw3oxluud3ueky6geqzs6b62s5eaj457pr5bgtm52gnza",
}


def model_cid_str(model_id: str) -> str:
    """The CID as text (multibase ``b``: lower-case RFC 4648 base32, no padding)."""
    return "b" + base64.b32encode(model_cid(model_id)).decode().lower().rstrip("=")


model_ids = st.text(alphabet=st.characters(codec="utf-8"), min_size=1, max_size=64)


@pytest.mark.parametrize(("model_id", "expected"), sorted(PINNED.items()))
def test_pinned_cids(model_id: str, expected: str) -> None:
    assert model_cid_str(model_id) == expected


def test_any_host_key() -> None:
    assert ANY_HOST_KEY == "llm-inference"
    assert model_cid_str(ANY_HOST_KEY) == PINNED["llm-inference"]


def test_constants() -> None:
    assert (CID_VERSION, JSON_MULTICODEC, SHA2_256) == (1, 0x0200, 0x12)


@pytest.mark.parametrize(
    ("value", "encoded"),
    [
        (0, b"\x00"),
        (1, b"\x01"),
        (0x12, b"\x12"),
        (0x7F, b"\x7f"),
        (0x80, b"\x80\x01"),
        (0x0200, b"\x80\x04"),
        (300, b"\xac\x02"),
        (0x3FFF, b"\xff\x7f"),
        (0x4000, b"\x80\x80\x01"),
        (2**63 - 1, b"\xff" * 8 + b"\x7f"),
    ],
)
def test_uvarint(value: int, encoded: bytes) -> None:
    assert encode_uvarint(value) == encoded


def test_uvarint_rejects_negative() -> None:
    with pytest.raises(ValueError, match="unsigned"):
        encode_uvarint(-1)


def test_binary_layout() -> None:
    cid = model_cid("llama-3.2-1b-instruct")
    digest = hashlib.sha256(b"llama-3.2-1b-instruct").digest()
    assert cid == b"\x01" + b"\x80\x04" + b"\x12\x20" + digest
    assert len(cid) == 37


@pytest.mark.parametrize("model_id", ["", "\ud800"])
def test_invalid_model_ids(model_id: str) -> None:
    with pytest.raises(ValueError):
        model_cid(model_id)


@given(model_ids)
def test_text_form_is_unpadded_lower_base32_of_the_binary_form(model_id: str) -> None:
    text = model_cid_str(model_id)
    assert text.startswith("b")
    assert set(text[1:]) <= set("abcdefghijklmnopqrstuvwxyz234567")
    body = text[1:].upper()
    assert base64.b32decode(body + "=" * (-len(body) % 8)) == model_cid(model_id)
    assert model_cid(model_id)[5:] == hashlib.sha256(model_id.encode()).digest()


@given(model_ids, model_ids)
def test_distinct_ids_give_distinct_keys(a: str, b: str) -> None:
    assert (model_cid(a) == model_cid(b)) == (a == b)


@given(model_ids)
def test_matches_py_cid(model_id: str) -> None:
    cid = pytest.importorskip("cid")
    multihash = pytest.importorskip("multihash")
    digest = hashlib.sha256(model_id.encode()).digest()
    reference = cid.make_cid(1, "json", multihash.encode(digest, "sha2-256"))
    assert reference.buffer == model_cid(model_id)
    assert reference.encode("base32").decode() == model_cid_str(model_id)
