"""The ``fabstir-sidecar`` console script: signal handling that is in place before imports.

Importing the CLI (typer and the whole ``fabstir_sidecar`` package) takes about half a
second. Python's default handlers made a SIGINT in that time a KeyboardInterrupt traceback
and a SIGTERM a death by signal, although docs/cli.md promises that a signal during
start-up is a clean stop. An entry point inside ``fabstir_sidecar`` cannot help, since the
package itself is imported first; so this module lives beside it and imports nothing but
the standard library before installing its handlers.

A signal before the CLI took over ends the process quietly: exit 0 for the long-running
``node``, ``host`` and ``bootstrap`` (a clean stop, as later on), 128 + the signal number for
the other commands. For the long-running commands the handlers stay until their event loop
installs its own (cli/output.py ``run_until_shutdown_signal``); the other commands get
Python's usual handling back once the CLI is imported.
"""

from __future__ import annotations

import signal
import sys
from types import FrameType

__all__ = ["SERVING_COMMANDS", "command_of", "main"]

SERVING_COMMANDS = frozenset({"node", "host", "bootstrap"})
_GLOBAL_OPTIONS_WITH_VALUE = frozenset({"--log-level", "--log-format"})


def command_of(argv: list[str]) -> str | None:
    """The subcommand named in ``argv`` (the arguments after the program name), if any."""
    args = iter(argv)
    for arg in args:
        if arg in _GLOBAL_OPTIONS_WITH_VALUE:
            next(args, None)
        elif not arg.startswith("-"):
            return arg
    return None


def main() -> None:
    serving = command_of(sys.argv[1:]) in SERVING_COMMANDS

    def stop(signum: int, _frame: FrameType | None) -> None:
        raise SystemExit(0 if serving else 128 + signum)

    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, stop)
    from fabstir_sidecar.cli.app import main as cli_main  # the slow part

    if not serving:
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
    cli_main()
