"""``fabstir-sidecar daemon ...``: obtain and locate the p2pd binary."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from fabstir_sidecar.cli.output import fail
from fabstir_sidecar.core.errors import FabstirError
from fabstir_sidecar.daemon.binary import P2PD_SHA256, find_p2pd, install_p2pd

app = typer.Typer(help="Obtain and locate the p2pd daemon binary.", no_args_is_help=True)


def _progress(line: str) -> None:
    sys.stderr.write(f"  {line}\n")
    sys.stderr.flush()


@app.command("install")
def install(
    force: Annotated[bool, typer.Option("--force", help="Download again even if cached.")] = False,
    cache_dir: Annotated[Path | None, typer.Option("--cache-dir", help="Cache directory.")] = None,
    wheel: Annotated[
        Path | None,
        typer.Option("--wheel", help="Use an already downloaded hivemind 1.1.12 wheel."),
    ] = None,
) -> None:
    """Download hivemind==1.1.12 (no deps), extract only p2pd, verify its sha256, cache it.

    Prints the installed binary's path on stdout.
    """
    try:
        path = install_p2pd(cache_dir=cache_dir, force=force, wheel=wheel, progress=_progress)
    except FabstirError as exc:
        fail(str(exc))
    sys.stdout.write(f"{path}\n")


@app.command("path")
def path(
    p2pd: Annotated[str | None, typer.Option("--p2pd", help="Explicit path to check.")] = None,
) -> None:
    """Print the p2pd binary a node would use (explicit, P2PD_BIN, PATH, then the cache)."""
    try:
        found = find_p2pd(p2pd)
    except FabstirError as exc:
        fail(str(exc))
    sys.stdout.write(f"{found}\n")


@app.command("sha256")
def sha256() -> None:
    """Print the pinned sha256 of p2pd."""
    sys.stdout.write(f"{P2PD_SHA256}\n")
