"""The README's host + client example runs as printed (real p2pd daemons on loopback)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

README = Path(__file__).resolve().parents[2] / "README.md"


def python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), re.S)


def test_the_host_and_client_example_runs(p2pd_path: str) -> None:
    (example,) = [b for b in python_blocks() if "HostService" in b]
    env = {**os.environ, "P2PD_BIN": p2pd_path, "P2P_ENABLE_MDNS": "false"}
    done = subprocess.run(
        [sys.executable, "-c", example],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("best host: 12D3KooW")
    assert lines[1] == "echo: hi"
