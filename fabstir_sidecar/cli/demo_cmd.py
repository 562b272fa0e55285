"""``fabstir-sidecar demo``: the local demo network (:mod:`fabstir_sidecar.tools.demo`),
each step printed with its elapsed time."""

from __future__ import annotations

from typing import Annotated

import anyio
import typer

from fabstir_sidecar.cli.output import fail, say
from fabstir_sidecar.core.errors import FabstirError
from fabstir_sidecar.tools.demo import run_demo


def _print_step(elapsed: float, text: str) -> None:
    say(f"[{elapsed * 1000:8.1f} ms] {text}")


def demo(
    hosts: Annotated[int, typer.Option("--hosts", min=1, max=50, help="How many hosts.")] = 3,
    p2pd: Annotated[str | None, typer.Option("--p2pd", help="Path of the p2pd binary.")] = None,
) -> None:
    """Run the local demo network: bootstrap, hosts, a client that finds a host and runs a job."""
    try:
        anyio.run(lambda: run_demo(hosts, p2pd=p2pd, on_step=_print_step))
    except FabstirError as exc:
        fail(str(exc))


COMMANDS = (demo,)
"""The commands of this module, in the order ``fabstir-sidecar --help`` lists them."""
