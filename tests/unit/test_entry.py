"""The console script's entry point (fabstir_sidecar_entry): which command is starting."""

from __future__ import annotations

import pytest

from fabstir_sidecar_entry import SERVING_COMMANDS, command_of


@pytest.mark.parametrize(
    ("argv", "command"),
    [
        (["host", "--model", "m"], "host"),
        (["--log-level", "debug", "node"], "node"),
        (["--log-level=debug", "--log-format", "json", "bootstrap"], "bootstrap"),
        (["status", "/ip4/127.0.0.1/tcp/1/p2p/x"], "status"),
        (["--help"], None),
        ([], None),
    ],
)
def test_command_of(argv: list[str], command: str | None) -> None:
    assert command_of(argv) == command


def test_the_long_running_commands_are_the_serving_ones() -> None:
    assert {"node", "host", "bootstrap"} == SERVING_COMMANDS
