"""Private per-node runtime directories for control and handler sockets.

Each node gets its own ``fabstir-sidecar-<pid>-<random>`` directory, mode 0700, under
``$XDG_RUNTIME_DIR`` (when usable) or the system temp dir: never a shared fixed socket path
another user or another node could squat. The directory is removed when the node stops.
If a Python process is killed outright (SIGKILL) it cannot clean up, so creating a new
directory first sweeps the ones whose owning process is gone.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
from pathlib import Path

PREFIX = "fabstir-sidecar-"
# AF_UNIX paths are limited to 108 bytes on Linux (including the NUL).
_MAX_SOCKET_PATH = 100

log = logging.getLogger(__name__)


def _base_dir() -> Path:
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime and os.path.isdir(runtime) and os.access(runtime, os.W_OK | os.X_OK):
        return Path(runtime)
    return Path(tempfile.gettempdir())


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def sweep_stale(base: Path | None = None) -> list[Path]:
    """Remove runtime dirs (ours, same uid) whose owning process no longer exists."""
    base = base or _base_dir()
    removed: list[Path] = []
    try:
        entries = list(base.iterdir())
    except OSError:
        return removed
    uid = os.getuid()
    for entry in entries:
        if not entry.name.startswith(PREFIX):
            continue
        pid_part = entry.name[len(PREFIX) :].split("-", 1)[0]
        if not pid_part.isdigit():
            continue
        try:
            st = entry.lstat()
        except OSError:
            continue
        if st.st_uid != uid or not entry.is_dir() or entry.is_symlink():
            continue
        if pid_alive(int(pid_part)):
            continue
        shutil.rmtree(entry, ignore_errors=True)
        removed.append(entry)
        log.info("removed stale runtime dir", extra={"path": str(entry)})
    return removed


class RuntimeDir:
    """A private 0700 directory; ``close()`` removes it and everything in it."""

    def __init__(self, base: Path | None = None) -> None:
        base = base or _base_dir()
        sweep_stale(base)
        path = Path(tempfile.mkdtemp(prefix=f"{PREFIX}{os.getpid()}-", dir=base))
        os.chmod(path, 0o700)
        if len(str(path / "handlers.sock")) > _MAX_SOCKET_PATH:
            shutil.rmtree(path, ignore_errors=True)
            path = Path(tempfile.mkdtemp(prefix=f"{PREFIX}{os.getpid()}-", dir="/tmp"))
            os.chmod(path, 0o700)
        self.path = path
        self._closed = False

    def file(self, name: str) -> Path:
        return self.path / name

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        shutil.rmtree(self.path, ignore_errors=True)


def remove_socket(path: Path) -> None:
    """Remove a (possibly stale) socket file; a missing file is fine."""
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
