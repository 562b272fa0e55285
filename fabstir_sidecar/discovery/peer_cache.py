"""Known hosts, remembered across restarts so a node reconnects fast.

A small JSON file (``<data_dir>/peers.json``) of hosts that answered a status request:
peer id, addresses, models, last seen. Bounded (oldest entries evicted), written atomically,
and a corrupt or unreadable file is logged and ignored — it is a cache, never a source of
truth: an entry is a hint until the host answers again.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

log = logging.getLogger(__name__)

FILE_NAME = "peers.json"
FORMAT_VERSION = 1


@dataclass(frozen=True, slots=True)
class CachedPeer:
    peer_id: str
    addrs: tuple[str, ...]
    models: tuple[str, ...] = ()
    last_seen: float = 0.0


class PeerCache:
    def __init__(self, path: Path | None, *, max_entries: int = 256) -> None:
        self.path = path
        self.max_entries = max_entries
        self._peers: dict[str, CachedPeer] = {}
        self._dirty = False
        if path is not None:
            self._load(path)

    @classmethod
    def in_dir(cls, data_dir: Path | None, **kwargs: int) -> PeerCache:
        return cls(None if data_dir is None else data_dir / FILE_NAME, **kwargs)

    def _load(self, path: Path) -> None:
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
            entries = doc["peers"] if doc.get("version") == FORMAT_VERSION else []
            for entry in entries:
                peer = CachedPeer(
                    peer_id=str(entry["peer_id"]),
                    addrs=tuple(str(a) for a in entry["addrs"]),
                    models=tuple(str(m) for m in entry.get("models", ())),
                    last_seen=float(entry.get("last_seen", 0.0)),
                )
                self._peers[peer.peer_id] = peer
        except FileNotFoundError:
            return
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            log.warning(
                "ignoring unreadable peer cache", extra={"path": str(path), "error": str(exc)}
            )
            self._peers.clear()
        self._evict()

    def __len__(self) -> int:
        return len(self._peers)

    def __contains__(self, peer_id: object) -> bool:
        return peer_id in self._peers

    def peers(self) -> list[CachedPeer]:
        """Most recently seen first."""
        return sorted(self._peers.values(), key=lambda p: p.last_seen, reverse=True)

    def remember(
        self,
        peer_id: str,
        addrs: tuple[str, ...],
        models: tuple[str, ...] = (),
        *,
        now: float | None = None,
    ) -> None:
        if not addrs:
            return
        self._peers[peer_id] = CachedPeer(
            peer_id, addrs, models, time.time() if now is None else now
        )
        self._dirty = True
        self._evict()

    def forget(self, peer_id: str) -> None:
        if self._peers.pop(peer_id, None) is not None:
            self._dirty = True

    def _evict(self) -> None:
        if len(self._peers) > self.max_entries:
            for peer in self.peers()[self.max_entries :]:
                del self._peers[peer.peer_id]

    def save(self) -> None:
        """Write the file if anything changed (atomic: temp file + rename)."""
        if self.path is None or not self._dirty:
            return
        doc = {"version": FORMAT_VERSION, "peers": [asdict(p) for p in self.peers()]}
        tmp: str | None = None
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".peers-", suffix=".tmp")
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump(doc, fh)
            os.replace(tmp, self.path)
            tmp = None
            self._dirty = False
        except OSError as exc:
            log.warning(
                "could not save peer cache", extra={"path": str(self.path), "error": str(exc)}
            )
        finally:
            if tmp is not None:  # a failed write leaves no stray temp file behind
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
