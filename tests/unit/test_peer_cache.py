"""PeerCache: the small JSON file of known hosts (``<data_dir>/peers.json``)."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any, cast

import pytest

from fabstir_sidecar.discovery import peer_cache as peer_cache_module
from fabstir_sidecar.discovery.peer_cache import FILE_NAME, FORMAT_VERSION, CachedPeer, PeerCache
from fabstir_sidecar.discovery.service import Discovery

P1 = "12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXTN"
P2 = "12D3KooWGDerLRTt3xE533FLJVqRtTHG5BpefxXns9aNLeZsdD7X"
P3 = "12D3KooWHVvmkLqyLGHnYNjH4XaZ2S7sWigUysMT9BdPP2wdHSpR"


def files_in(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


def test_round_trip_through_the_file(tmp_path: Path) -> None:
    cache = PeerCache.in_dir(tmp_path)
    assert cache.path == tmp_path / FILE_NAME
    assert len(cache) == 0  # no file yet: empty, no error
    cache.remember(P1, ("/ip4/127.0.0.1/tcp/4001",), ("m1", "m2"), now=100.0)
    cache.remember(P2, ("/ip4/127.0.0.1/tcp/4002", "/ip6/::1/tcp/4002"), ("m2",), now=200.0)
    cache.save()

    doc = json.loads((tmp_path / FILE_NAME).read_text(encoding="utf-8"))
    assert doc["version"] == FORMAT_VERSION
    assert [e["peer_id"] for e in doc["peers"]] == [P2, P1]  # most recent first

    again = PeerCache.in_dir(tmp_path)
    assert len(again) == 2 and P1 in again and P2 in again
    assert again.peers() == [
        CachedPeer(P2, ("/ip4/127.0.0.1/tcp/4002", "/ip6/::1/tcp/4002"), ("m2",), 200.0),
        CachedPeer(P1, ("/ip4/127.0.0.1/tcp/4001",), ("m1", "m2"), 100.0),
    ]


def test_remember_replaces_an_entry_and_forget_removes_it(tmp_path: Path) -> None:
    cache = PeerCache.in_dir(tmp_path)
    cache.remember(P1, ("/ip4/127.0.0.1/tcp/1",), ("m1",), now=1.0)
    cache.remember(P1, ("/ip4/127.0.0.1/tcp/2",), ("m2",), now=2.0)
    assert cache.peers() == [CachedPeer(P1, ("/ip4/127.0.0.1/tcp/2",), ("m2",), 2.0)]
    cache.remember(P2, (), ("m1",))  # no address: nothing to dial, not remembered
    assert P2 not in cache
    cache.save()
    cache.forget(P1)
    cache.save()
    assert PeerCache.in_dir(tmp_path).peers() == []


def test_save_is_a_no_op_when_nothing_changed(tmp_path: Path) -> None:
    cache = PeerCache.in_dir(tmp_path)
    cache.save()
    assert files_in(tmp_path) == []
    cache.remember(P1, ("/ip4/127.0.0.1/tcp/1",), now=1.0)
    cache.save()
    stamp = (tmp_path / FILE_NAME).stat().st_mtime_ns
    os.utime(tmp_path / FILE_NAME, ns=(0, 0))
    cache.save()  # not dirty any more: the file is not rewritten
    assert (tmp_path / FILE_NAME).stat().st_mtime_ns == 0 != stamp


def test_write_is_atomic_and_a_failed_write_leaves_the_old_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    cache = PeerCache.in_dir(tmp_path)
    cache.remember(P1, ("/ip4/127.0.0.1/tcp/1",), now=1.0)
    cache.save()
    before = (tmp_path / FILE_NAME).read_text(encoding="utf-8")

    # The new content goes to a temp file in the same directory, renamed over the old one.
    renames: list[tuple[str, str]] = []
    real_replace = os.replace

    def spy_replace(src: Any, dst: Any) -> None:
        renames.append((str(src), str(dst)))
        assert (tmp_path / FILE_NAME).read_text(encoding="utf-8") == before  # untouched so far
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", spy_replace)  # the module calls os.replace
    cache.remember(P2, ("/ip4/127.0.0.1/tcp/2",), now=2.0)
    cache.save()
    [(src, dst)] = renames
    assert Path(src).parent == tmp_path and Path(src).name.startswith(".peers-")
    assert dst == str(tmp_path / FILE_NAME)
    monkeypatch.undo()
    written = (tmp_path / FILE_NAME).read_text(encoding="utf-8")

    # A write that dies half-way (disk full) leaves the previous file whole, and no temp file.
    def half_dump(doc: Any, fh: Any) -> None:
        fh.write('{"version": 1, "peers": [')
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(json, "dump", half_dump)  # the module calls json.dump
    cache.remember(P3, ("/ip4/127.0.0.1/tcp/3",), now=3.0)
    with caplog.at_level(logging.WARNING, logger=peer_cache_module.__name__):
        cache.save()  # logged, not raised: it is only a cache
    assert "could not save peer cache" in caplog.text
    assert (tmp_path / FILE_NAME).read_text(encoding="utf-8") == written
    assert files_in(tmp_path) == [FILE_NAME]
    monkeypatch.undo()

    cache.save()  # still dirty: the next save writes it
    assert P3 in PeerCache.in_dir(tmp_path)


@pytest.mark.parametrize(
    "content",
    [
        "{not json",
        "",
        "[]",
        '{"version": 1, "peers": [{"peer_id": "x"}]}',  # no addrs
        '{"version": 1, "peers": [{"peer_id": "x", "addrs": 5}]}',
        '{"version": 1, "peers": {"peer_id": "x"}}',
        '{"version": 1, "peers": [{"peer_id": "x", "addrs": [], "last_seen": "soon"}]}',
    ],
)
def test_a_corrupt_file_is_ignored_with_a_warning(
    tmp_path: Path, content: str, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / FILE_NAME).write_text(content, encoding="utf-8")
    with caplog.at_level(logging.WARNING, logger=peer_cache_module.__name__):
        cache = PeerCache.in_dir(tmp_path)
    assert len(cache) == 0
    assert "ignoring unreadable peer cache" in caplog.text
    # The next save replaces it with a good file.
    cache.remember(P1, ("/ip4/127.0.0.1/tcp/1",), now=1.0)
    cache.save()
    assert [p.peer_id for p in PeerCache.in_dir(tmp_path).peers()] == [P1]


def test_an_unknown_format_version_is_ignored(tmp_path: Path) -> None:
    doc = {"version": FORMAT_VERSION + 1, "peers": [{"peer_id": P1, "addrs": ["/ip4/1.2.3.4"]}]}
    (tmp_path / FILE_NAME).write_text(json.dumps(doc), encoding="utf-8")
    assert len(PeerCache.in_dir(tmp_path)) == 0


def test_eviction_keeps_the_most_recent(tmp_path: Path) -> None:
    cache = PeerCache.in_dir(tmp_path, max_entries=3)
    ids = [f"peer{i}" for i in range(5)]
    for i in (3, 0, 4, 1, 2):  # seen out of order
        cache.remember(ids[i], (f"/ip4/127.0.0.1/tcp/{i + 1}",), now=float(i))
        assert len(cache) <= 3
    assert [p.peer_id for p in cache.peers()] == ["peer4", "peer3", "peer2"]
    cache.save()
    assert [p.peer_id for p in PeerCache.in_dir(tmp_path).peers()] == ["peer4", "peer3", "peer2"]

    # A file larger than the bound (written with a larger one) is cut on load, newest kept.
    big = PeerCache.in_dir(tmp_path / "big", max_entries=10)
    for i, peer in enumerate(ids):
        big.remember(peer, (f"/ip4/127.0.0.1/tcp/{i + 1}",), now=float(i))
    big.save()
    small = PeerCache.in_dir(tmp_path / "big", max_entries=2)
    assert [p.peer_id for p in small.peers()] == ["peer4", "peer3"]


def test_without_a_data_dir_nothing_is_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    cache = PeerCache.in_dir(None)
    assert cache.path is None
    cache.remember(P1, ("/ip4/127.0.0.1/tcp/1",), ("m1",), now=1.0)
    assert [p.peer_id for p in cache.peers()] == [P1]  # kept in memory
    cache.save()
    assert files_in(tmp_path) == []


@pytest.mark.anyio
async def test_discovery_keeps_the_cache_it_is_given_even_when_empty(tmp_path: Path) -> None:
    # Regression: ``peer_cache or PeerCache(None)`` dropped an empty cache (len 0 is falsy),
    # so a first run with a data_dir never wrote peers.json.
    cache = PeerCache.in_dir(tmp_path)
    assert len(cache) == 0
    discovery = Discovery(cast(Any, None), peer_cache=cache)
    assert discovery.peer_cache is cache
