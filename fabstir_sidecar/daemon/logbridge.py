"""Bridge p2pd's log output into Python logging.

p2pd (go-libp2p-daemon) writes zap "development" lines on stderr::

    <ts>\tERROR\tp2pd\tgo-libp2p-daemon/daemon.go:198\terror accepting connection\t{"error": ".."}

and Go's standard logger for fatal start-up errors::

    2026/11/24 13:43:18 failed to listen on any addresses: [... bind: address already in use]

``parse_log_line`` is pure (tested without a daemon); ``emit`` turns a parsed line into a
record on the logger ``fabstir_sidecar.p2pd.<go logger name>`` with the structured fields in
``extra`` so JSON log formatters keep them.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass, field
from typing import Any

LOGGER_PREFIX = "fabstir_sidecar.p2pd"

_ZAP_LEVELS = {
    "DEBUG": logging.DEBUG,
    "INFO": logging.INFO,
    "WARN": logging.WARNING,
    "WARNING": logging.WARNING,
    "ERROR": logging.ERROR,
    "DPANIC": logging.CRITICAL,
    "PANIC": logging.CRITICAL,
    "FATAL": logging.CRITICAL,
}
_GO_STD_LOG = re.compile(r"^\d{4}/\d{2}/\d{2} \d{2}:\d{2}:\d{2}(?:\.\d+)? (?P<msg>.*)$")


@dataclass(frozen=True, slots=True)
class DaemonLogLine:
    level: int
    logger: str
    message: str
    caller: str = ""
    fields: dict[str, Any] = field(default_factory=dict)
    fatal_startup: bool = False  # a Go std-log line: p2pd prints these right before exiting


def parse_log_line(line: str) -> DaemonLogLine:
    """Parse one stderr line of p2pd; unknown shapes become INFO lines verbatim."""
    text = line.rstrip("\r\n")
    parts = text.split("\t")
    if len(parts) >= 4 and parts[1].upper() in _ZAP_LEVELS:
        level = _ZAP_LEVELS[parts[1].upper()]
        logger = parts[2] or "p2pd"
        caller = parts[3]
        message = parts[4] if len(parts) > 4 else ""
        fields: dict[str, Any] = {}
        if len(parts) > 5:
            try:
                decoded = json.loads("\t".join(parts[5:]))
            except ValueError:
                fields = {"raw": "\t".join(parts[5:])}
            else:
                fields = decoded if isinstance(decoded, dict) else {"value": decoded}
        return DaemonLogLine(level, logger, message, caller, fields)
    match = _GO_STD_LOG.match(text)
    if match:
        return DaemonLogLine(logging.ERROR, "p2pd", match["msg"], fatal_startup=True)
    return DaemonLogLine(logging.INFO, "p2pd", text)


def emit(parsed: DaemonLogLine, *, pid: int, quiet_shutdown: bool = False) -> None:
    """Log a parsed p2pd line. During a shutdown we started, its accept errors are noise."""
    level = parsed.level
    if (
        quiet_shutdown
        and level >= logging.ERROR
        and "closed network connection" in str(parsed.fields) + parsed.message
    ):
        level = logging.DEBUG
    logger = logging.getLogger(f"{LOGGER_PREFIX}.{_safe_name(parsed.logger)}")
    if not logger.isEnabledFor(level):
        return
    logger.log(
        level,
        "%s",
        parsed.message,
        extra={"p2pd_pid": pid, "p2pd_caller": parsed.caller, "p2pd_fields": parsed.fields},
    )


def _safe_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_\-]", "_", name) or "p2pd"
