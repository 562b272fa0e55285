"""The shape the long-running commands (``node``, ``host``, ``bootstrap``) share: start a
node, print its ``ready`` line (or the text version), print SDK messages, serve until
SIGINT/SIGTERM (:func:`~fabstir_sidecar.cli.output.run_until_shutdown_signal`), or exit 1
once the node's daemon is gone for good. Stdout never blocks serving (cli/events.py)."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import anyio

from fabstir_sidecar.cli.common import command_config
from fabstir_sidecar.cli.output import (
    emit_event,
    failures_reported,
    nonblocking_stdout,
    run_until_shutdown_signal,
    say,
)
from fabstir_sidecar.core.errors import DaemonUnavailableError
from fabstir_sidecar.node.manager import DiscoveryManager
from fabstir_sidecar.tools.roles import Role


def print_message(json_out: bool) -> Callable[[str, Any], None]:
    """A message handler printing each SDK message: a ``message`` event or a text line."""

    def on_message(sender: str, message: Any) -> None:
        if json_out:
            emit_event("message", **{"from": sender, "message": message})
        else:
            say(f"message from {sender}: {json.dumps(message, ensure_ascii=False)}")

    return on_message


def serve_until_signal(
    make_node: Callable[[], DiscoveryManager],
    *,
    json_out: bool,
    headline: Callable[[str], str],
    messages: bool = True,
    notes: Callable[[DiscoveryManager], list[str]] | None = None,
    close: Callable[[], Awaitable[object]] | None = None,
    drain: Callable[[], Awaitable[object]] | None = None,
) -> None:
    """Run the node ``make_node`` builds until a signal. Text mode prints ``headline(peer
    id)``, one ``listening:`` line per address, then ``notes(node)``; on the signal,
    ``drain`` runs while the node still serves (a host finishing its jobs), ``close`` last."""

    async def body() -> None:
        async with make_node() as node:
            if messages:
                node.on_message(print_message(json_out))
            addrs = await node.get_addrs()
            if json_out:
                emit_event("ready", peer_id=node.peer_id, addrs=addrs)
            else:
                say(headline(node.peer_id))
                for addr in addrs:
                    say(f"listening: {addr}")
                for line in notes(node) if notes else ():
                    say(line)
            try:
                reason = await node.wait_daemon_failure()
            except anyio.get_cancelled_exc_class():  # the signal: let jobs in flight finish
                if drain is not None:
                    with anyio.CancelScope(shield=True):  # bounded by drain's own deadline
                        await drain()
                raise
        # A node without its daemon serves nothing: exit non-zero so that systemd or a
        # compose restart policy notices (the supervisor logged why it gave up).
        raise DaemonUnavailableError(f"p2pd is gone for good, stopping the node: {reason}")

    async def main() -> None:
        try:
            await run_until_shutdown_signal(body)
        finally:
            if close is not None:
                await close()

    with nonblocking_stdout():
        anyio.run(main)


def serve_role(
    role: Role,
    params: Mapping[str, Any],
    headline: Callable[[str], str],
    *,
    messages: bool = True,
    notes: Callable[[DiscoveryManager], list[str]] | None = None,
) -> None:
    """A plain node of ``role`` made from a command's flags (its ``locals()``, see
    :func:`~fabstir_sidecar.cli.common.command_config`), served until a signal."""
    with failures_reported():
        cfg = command_config(role, params)
        serve_until_signal(
            lambda: DiscoveryManager(cfg),
            json_out=params["json_out"],
            headline=headline,
            messages=messages,
            notes=notes,
        )
