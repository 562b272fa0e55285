"""Collect the library's and p2pd's log records during one test, to attach when it fails.

p2pd's stderr is bridged into the ``fabstir_sidecar.p2pd.*`` loggers with the daemon's pid
in ``p2pd_pid``; ``render`` names each daemon by the test node it belongs to.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping

ROOT_LOGGER = "fabstir_sidecar"


class LogCollector(logging.Handler):
    """A handler on the ``fabstir_sidecar`` logger; ``attach``/``detach`` around a test."""

    def __init__(self, level: int = logging.INFO, limit: int = 20_000) -> None:
        super().__init__(level)
        self.records: list[logging.LogRecord] = []
        self._limit = limit
        self._dropped = 0
        self._saved_level: int | None = None

    def emit(self, record: logging.LogRecord) -> None:
        if len(self.records) < self._limit:
            self.records.append(record)
        else:
            self._dropped += 1

    def attach(self) -> None:
        logger = logging.getLogger(ROOT_LOGGER)
        self._saved_level = logger.level
        if logger.getEffectiveLevel() > self.level:
            logger.setLevel(self.level)  # restored by detach()
        logger.addHandler(self)

    def detach(self) -> None:
        logger = logging.getLogger(ROOT_LOGGER)
        logger.removeHandler(self)
        if self._saved_level is not None:
            logger.setLevel(self._saved_level)
            self._saved_level = None

    def render(self, names: Callable[[], Mapping[int | str, str]] | None = None) -> str:
        """The records, one line each; ``names`` maps p2pd pids and peer IDs to node names."""
        pid_names = dict(names()) if names is not None else {}
        lines = [format_record(r, pid_names) for r in self.records]
        if self._dropped:
            lines.append(f"... {self._dropped} more records dropped")
        return "\n".join(lines)


def format_record(record: logging.LogRecord, names: Mapping[int | str, str]) -> str:
    stamp = time.strftime("%H:%M:%S", time.localtime(record.created))
    millis = int(record.msecs)
    pid = getattr(record, "p2pd_pid", None)
    peer = record.__dict__.get("peer_id")
    source = record.name.removeprefix(ROOT_LOGGER + ".")
    if isinstance(pid, int):
        source = f"{names.get(pid, '?')} p2pd[{pid}] {source}"
    elif isinstance(peer, str) and peer in names:
        source = f"{names[peer]} {source}"
    message = record.getMessage()
    fields = getattr(record, "p2pd_fields", None)
    if fields:
        message += f" {fields}"
    for key in ("peer_id", "error", "reason", "returncode"):
        value = record.__dict__.get(key)
        if value is not None:
            message += f" {key}={value}"
    return f"{stamp}.{millis:03d} {record.levelname:<7} {source}: {message}"
