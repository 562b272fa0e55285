"""Identity key files for p2pd's -id flag (fabstir_sidecar.daemon.identity)."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from Crypto.PublicKey import ECC
from p2pclient.libp2p_stubs.crypto.pb import crypto_pb2

from fabstir_sidecar.core.errors import ConfigError
from fabstir_sidecar.daemon.identity import (
    generate_identity,
    load_or_create_identity,
    peer_id_from_key_file,
)

B58 = set("123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz")


def _write_key(path: Path, key_type: crypto_pb2.KeyType.ValueType, data: bytes) -> Path:
    path.write_bytes(crypto_pb2.PrivateKey(key_type=key_type, data=data).SerializeToString())
    return path


def _ed25519_data(seed: bytes) -> bytes:
    key = ECC.construct(curve="Ed25519", seed=seed)  # type: ignore[arg-type]  # stub says str|int
    return seed + key.public_key().export_key(format="raw")


def test_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "node.key"
    peer_id = generate_identity(path)
    assert peer_id.startswith("12D3KooW")
    assert set(peer_id) <= B58
    assert peer_id_from_key_file(path) == peer_id


def test_file_format(tmp_path: Path) -> None:
    path = tmp_path / "node.key"
    generate_identity(path)
    key = crypto_pb2.PrivateKey()
    key.ParseFromString(path.read_bytes())
    assert key.key_type == crypto_pb2.Ed25519
    assert len(key.data) == 64
    assert _ed25519_data(key.data[:32]) == key.data


def test_keys_are_distinct(tmp_path: Path) -> None:
    assert generate_identity(tmp_path / "a") != generate_identity(tmp_path / "b")


def test_mode_is_0600_and_no_temp_left(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "node.key"
    generate_identity(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in path.parent.iterdir()] == ["node.key"]


def test_known_seed_gives_the_daemons_peer_id(tmp_path: Path) -> None:
    # Expected value printed by p2pd 1.1.12 itself ("Peer ID: ...") for this key file.
    path = _write_key(tmp_path / "k", crypto_pb2.Ed25519, _ed25519_data(bytes(range(32))))
    assert peer_id_from_key_file(path) == "12D3KooWA4Xop1JaT3MHxwYMkCepYsv4iPVopMXwCz5iHYdBfeSB"


def test_generate_refuses_to_overwrite(tmp_path: Path) -> None:
    path = tmp_path / "node.key"
    path.write_bytes(b"precious")
    with pytest.raises(ConfigError, match="already exists"):
        generate_identity(path)
    assert path.read_bytes() == b"precious"


def test_load_or_create(tmp_path: Path) -> None:
    path = tmp_path / "node.key"
    created = load_or_create_identity(path)
    content = path.read_bytes()
    assert load_or_create_identity(path) == created
    assert path.read_bytes() == content


def test_load_or_create_rejects_a_bad_existing_file(tmp_path: Path) -> None:
    path = tmp_path / "node.key"
    path.write_bytes(b"\xff\xff")
    with pytest.raises(ConfigError):
        load_or_create_identity(path)
    assert path.read_bytes() == b"\xff\xff"


def _bad_files(tmp_path: Path) -> dict[str, Path]:
    seed = bytes(32)
    good = _ed25519_data(seed)
    tampered = good[:32] + bytes(32)
    files = {
        "missing": tmp_path / "missing.key",
        "directory": tmp_path / "dir.key",
        "empty": tmp_path / "empty.key",
        "garbage": tmp_path / "garbage.key",
        "rsa": _write_key(tmp_path / "rsa.key", crypto_pb2.RSA, good),
        "short": _write_key(tmp_path / "short.key", crypto_pb2.Ed25519, good[:32]),
        "long": _write_key(tmp_path / "long.key", crypto_pb2.Ed25519, good + good[32:]),
        "mismatched": _write_key(tmp_path / "mismatch.key", crypto_pb2.Ed25519, tampered),
    }
    files["directory"].mkdir()
    files["empty"].write_bytes(b"")
    files["garbage"].write_bytes(b"\xff\xfe\x00 this is not a protobuf")
    return files


@pytest.mark.parametrize(
    ("kind", "reason"),
    [
        ("missing", "cannot read"),
        ("directory", "cannot read"),
        ("empty", "not a libp2p private key"),
        ("garbage", "not a libp2p private key"),
        ("rsa", "key type is RSA"),
        ("short", "32 bytes, expected 64"),
        ("long", "96 bytes, expected 64"),
        ("mismatched", "does not match"),
    ],
)
def test_invalid_files(tmp_path: Path, kind: str, reason: str) -> None:
    path = _bad_files(tmp_path)[kind]
    with pytest.raises(ConfigError, match=reason) as info:
        peer_id_from_key_file(path)
    assert str(path) in str(info.value)
