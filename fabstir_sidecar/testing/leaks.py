"""Which p2pd processes did this test session start? (Linux ``/proc``; pure apart from it.)

Every process the session starts inherits :data:`TAG_VAR` set to a tag unique to the
session (one per pytest-xdist worker), so the leak check counts only our own daemons, never
those of another test run, a benchmark or a service on the same machine.
"""

from __future__ import annotations

import contextlib
import os
import signal
import uuid
from collections.abc import Iterable
from pathlib import Path

TAG_VAR = "FABSTIR_PYTEST_SESSION"


def new_tag() -> str:
    return f"fabstir-pytest-{os.getpid()}-{uuid.uuid4().hex[:8]}"


def tagged(environ: bytes, tag: str) -> bool:
    """True if a NUL-separated ``/proc/<pid>/environ`` holds ``TAG_VAR=tag``."""
    return f"{TAG_VAR}={tag}".encode() in environ.split(b"\0")


def tagged_daemons(
    tag: str, names: Iterable[str] = ("p2pd",), proc: Path = Path("/proc")
) -> set[int]:
    """Live processes whose command name is one of ``names`` and that carry ``tag``
    (none where there is no ``/proc``: the check is Linux-only)."""
    comms = {n[:15] for n in names}  # the kernel keeps 15 characters of a command name
    found: set[int] = set()
    if not proc.is_dir():
        return found
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if (entry / "comm").read_text().strip() not in comms:
                continue
            stat = (entry / "stat").read_text()
            environ = (entry / "environ").read_bytes()
        except OSError:  # gone, or not ours to read
            continue
        if stat.rsplit(")", 1)[1].split()[0] in ("Z", "X"):
            continue
        if tagged(environ, tag):
            found.add(int(entry.name))
    return found


def kill_all(pids: Iterable[int]) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
