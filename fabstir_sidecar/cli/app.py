"""``fabstir-sidecar``: the command-line entry point (typer). Thin: parse, call the API, print."""

from __future__ import annotations

import logging
from typing import Annotated

import typer

from fabstir_sidecar.cli import (
    daemon_cmd,
    demo_cmd,
    discovery_cmd,
    gateway_cmd,
    host_cmd,
    node_cmd,
)
from fabstir_sidecar.core.logs import LogFormat, setup_logging

app = typer.Typer(
    name="fabstir-sidecar",
    help="libp2p networking for the Fabstir LLM marketplace, through a real p2pd daemon.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.add_typer(daemon_cmd.app, name="daemon")
for module in (node_cmd, host_cmd, discovery_cmd, demo_cmd, gateway_cmd):
    for command in module.COMMANDS:
        app.command()(command)  # named after the function


@app.callback()
def _global(
    log_level: Annotated[
        str,
        typer.Option("--log-level", envvar="FABSTIR_LOG_LEVEL", help="debug, info, warning, error"),
    ] = "warning",
    log_format: Annotated[
        str, typer.Option("--log-format", envvar="FABSTIR_LOG_FORMAT", help="logfmt or json")
    ] = "logfmt",
) -> None:
    """Logs go to stderr (structured); stdout carries results and JSON-lines events."""
    if log_level.strip().upper() not in logging.getLevelNamesMapping():
        raise typer.BadParameter(
            f"{log_level!r} is not a log level (debug, info, warning, error, critical)",
            param_hint="--log-level",
        )
    fmt: LogFormat = "json" if log_format.lower() == "json" else "logfmt"
    setup_logging(log_level.strip(), fmt)


def main() -> None:
    app()
