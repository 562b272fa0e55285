"""CLI output helpers: JSON-lines events on stdout, one-line errors on stderr.

Other tools script against these lines (see docs/cli.md): keep event names and fields.
"""

from __future__ import annotations

import json
import signal
import sys
from typing import Any, NoReturn

import anyio
import typer

from ..errors import ConfigError, FabstirError


def emit_event(event: str, **fields: Any) -> None:
    """Print one ``{"event": ..., ...}`` line on stdout and flush it at once."""
    sys.stdout.write(json.dumps({"event": event, **fields}, ensure_ascii=False) + "\n")
    sys.stdout.flush()


def say(text: str) -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def fail(message: str, code: int = 1) -> NoReturn:
    """One line on stderr, then exit with ``code``."""
    one_line = " ".join(message.split())
    sys.stderr.write(f"error: {one_line}\n")
    sys.stderr.flush()
    raise typer.Exit(code)


def exit_code_for(exc: FabstirError) -> int:
    return 2 if isinstance(exc, ConfigError) else 1


async def wait_for_shutdown_signal() -> int:
    """Block until SIGINT or SIGTERM; returns the signal number."""
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for signum in signals:
            return int(signum)
    return 0  # pragma: no cover
