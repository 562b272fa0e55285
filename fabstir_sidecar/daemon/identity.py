"""libp2p Ed25519 identity key files, in the format p2pd's ``-id`` flag reads.

The file is a marshalled libp2p ``PrivateKey`` protobuf (type Ed25519) whose data is
the 32-byte seed followed by the 32-byte public key, as go-libp2p writes it. The peer
id is the base58btc identity multihash of the marshalled ``PublicKey`` (keys this small
are inlined, not hashed), which gives the familiar ``12D3KooW...`` strings.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

from Crypto.PublicKey import ECC
from p2pclient.libp2p_stubs.crypto.pb import crypto_pb2

from fabstir_sidecar.core.errors import ConfigError
from fabstir_sidecar.core.peer_id import b58encode

_OPTION = "identity key file"
_SEED_LEN = 32
_PUB_LEN = 32
_IDENTITY_MULTIHASH = 0x00


def _public_key(seed: bytes) -> bytes:
    # pycryptodome's stub types construct()'s keywords as str | int; seed takes bytes.
    key = ECC.construct(curve="Ed25519", seed=seed)  # type: ignore[arg-type]
    raw: bytes = key.public_key().export_key(format="raw")
    return raw


def _peer_id(public_key: bytes) -> str:
    pub = crypto_pb2.PublicKey(key_type=crypto_pb2.Ed25519, data=public_key)
    marshalled: bytes = pub.SerializeToString()
    # One-byte varint length is enough: the marshalled Ed25519 key is 36 bytes.
    return b58encode(bytes([_IDENTITY_MULTIHASH, len(marshalled)]) + marshalled)


def _why(exc: OSError) -> str:
    return exc.strerror or str(exc)


def peer_id_from_key_file(path: Path) -> str:
    """Peer id of the key in ``path``; :class:`ConfigError` naming the file if invalid."""

    def bad(reason: str) -> ConfigError:
        return ConfigError(_OPTION, str(path), reason)

    try:
        blob = Path(path).read_bytes()
    except OSError as exc:
        raise bad(f"cannot read it: {_why(exc)}") from exc
    key = crypto_pb2.PrivateKey()
    try:
        key.ParseFromString(blob)
    except Exception as exc:  # protobuf's DecodeError and friends
        raise bad("not a libp2p private key protobuf") from exc
    if not key.IsInitialized():
        raise bad("not a libp2p private key protobuf")
    if key.key_type != crypto_pb2.Ed25519:
        raise bad(f"key type is {crypto_pb2.KeyType.Name(key.key_type)}, expected Ed25519")
    data = bytes(key.data)
    if len(data) != _SEED_LEN + _PUB_LEN:
        raise bad(f"Ed25519 key data is {len(data)} bytes, expected {_SEED_LEN + _PUB_LEN}")
    seed, public = data[:_SEED_LEN], data[_SEED_LEN:]
    try:
        derived = _public_key(seed)
    except ValueError as exc:
        raise bad(f"invalid Ed25519 seed: {exc}") from exc
    if derived != public:
        raise bad("Ed25519 public key does not match the private key")
    return _peer_id(public)


def new_identity_key() -> tuple[bytes, str]:
    """A new Ed25519 key, marshalled as p2pd's ``-id`` file holds it, and its peer id."""
    seed: bytes = ECC.generate(curve="Ed25519").seed
    public = _public_key(seed)
    blob = crypto_pb2.PrivateKey(key_type=crypto_pb2.Ed25519, data=seed + public)
    marshalled: bytes = blob.SerializeToString()
    return marshalled, _peer_id(public)


def generate_identity(path: Path) -> str:
    """Create a new key file at ``path`` (mode 0600) and return its peer id.

    Refuses to replace an existing file (:class:`ConfigError`): losing a key loses
    the node's identity.
    """
    path = Path(path)
    if path.exists():
        raise ConfigError(_OPTION, str(path), "already exists; refusing to overwrite it")
    blob, peer_id = new_identity_key()

    blocker = next((p for p in path.parents if p.exists() and not p.is_dir()), None)
    if blocker is not None:
        raise ConfigError(_OPTION, str(path), f"cannot create it: {blocker} is not a directory")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # mkstemp creates the file 0600, so the key is never readable by others.
        fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}-", suffix=".tmp")
    except OSError as exc:  # a parent that is a file, read-only or missing filesystem...
        raise ConfigError(_OPTION, str(path), f"cannot create it: {_why(exc)}") from exc
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(blob)
            out.flush()
            os.fsync(out.fileno())
        try:
            # link() fails if the name exists, so a concurrent creator is never clobbered.
            os.link(tmp_name, path)
        except FileExistsError as exc:
            raise ConfigError(
                _OPTION, str(path), "already exists; refusing to overwrite it"
            ) from exc
        except OSError:
            # A filesystem without hard links: fall back to rename.
            os.replace(tmp_name, path)
    except OSError as exc:  # disk full, I/O error...
        raise ConfigError(_OPTION, str(path), f"cannot write it: {_why(exc)}") from exc
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_name)
    return peer_id


def load_or_create_identity(path: Path) -> str:
    """Peer id of the key in ``path``, creating a new key there first if there is none."""
    path = Path(path)
    if not path.exists():
        try:
            return generate_identity(path)
        except ConfigError:
            if not path.exists():
                raise  # it could not be created (the error says why)
        # Lost a creation race: someone else wrote the file, use theirs.
    return peer_id_from_key_file(path)
