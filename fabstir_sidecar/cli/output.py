"""CLI output helpers: JSON-lines events on stdout, one-line errors on stderr.

Other tools script against these lines (see docs/cli.md): keep event names and fields.
"""

from __future__ import annotations

import contextlib
import json
import signal
import sys
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, NoReturn

import anyio
import typer

from fabstir_sidecar.cli.events import StdoutWriter
from fabstir_sidecar.core.errors import ConfigError, FabstirError

_writer: StdoutWriter | None = None


def emit_event(event: str, **fields: Any) -> None:
    """Print one ``{"event": ..., ...}`` line on stdout and flush it at once."""
    say(json.dumps({"event": event, **fields}, ensure_ascii=False))


def say(text: str) -> None:
    """One line on stdout: written at once, or, inside :func:`nonblocking_stdout`, handed
    to its writer thread (dropped if the reader stalls)."""
    if _writer is not None:
        _writer.write_line(text)
        return
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


@contextlib.contextmanager
def nonblocking_stdout() -> Iterator[StdoutWriter | None]:
    """While serving, stdout lines never block the event loop (see cli/events.py). A stdout
    without a file descriptor (a test runner's buffer) is written directly, as before."""
    global _writer
    sys.stdout.flush()
    try:
        fd = sys.stdout.fileno()
    except (OSError, ValueError):  # io.UnsupportedOperation is both
        yield None
        return
    writer = StdoutWriter(fd)
    _writer = writer
    try:
        yield writer
    finally:
        _writer = None
        writer.close()


def fail(message: str, code: int = 1) -> NoReturn:
    """One line on stderr, then exit with ``code``."""
    one_line = " ".join(message.split())
    sys.stderr.write(f"error: {one_line}\n")
    sys.stderr.flush()
    raise typer.Exit(code)


def exit_code_for(exc: FabstirError) -> int:
    return 2 if isinstance(exc, ConfigError) else 1


@contextlib.contextmanager
def failures_reported() -> Iterator[None]:
    """A ``FabstirError`` in the block: its one line on stderr, exit 2 for a ConfigError,
    else 1."""
    try:
        yield
    except FabstirError as exc:
        fail(str(exc), exit_code_for(exc))


async def run_until_shutdown_signal(body: Callable[[], Awaitable[object]]) -> None:
    """Run ``body`` (a long-running command: start a node, print ``ready``, serve) until it
    returns or SIGINT/SIGTERM arrives; a signal cancels it, its ``async with`` blocks stop
    the node cleanly, and the command exits 0.

    The signal handlers are installed before ``body`` starts, so a signal at any moment,
    during start-up or right after ``ready`` was printed, is a clean stop, never Python's
    default handling (KeyboardInterrupt, or death by SIGTERM). A command whose ``body``
    ends with ``await anyio.sleep_forever()`` runs until a signal. Exceptions raised by
    ``body`` propagate unchanged.
    """
    failure: list[Exception] = []
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with anyio.create_task_group() as tg:

            async def run() -> None:
                try:
                    await body()
                except Exception as exc:  # re-raised below, outside the task group
                    failure.append(exc)
                finally:
                    tg.cancel_scope.cancel()

            tg.start_soon(run)
            async for _signum in signals:
                tg.cancel_scope.cancel()
                break
    if failure:
        raise failure[0]
