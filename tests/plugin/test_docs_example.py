"""docs/testing.md's first example runs as written, in a project of its own."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest

pytest_plugins = ["pytester"]
pytestmark = pytest.mark.integration

DOC = Path(__file__).parents[2] / "docs" / "testing.md"


def first_python_block() -> str:
    match = re.search(r"```python\n(.*?)```", DOC.read_text(), re.S)
    assert match, "docs/testing.md has no python example"
    return match.group(1)


def test_the_documented_first_test_passes(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, p2pd_binary: Path
) -> None:
    # pytester's HOME is empty: point at the installed p2pd as `daemon install` would
    monkeypatch.setenv("P2PD_BIN", str(p2pd_binary))
    pytester.makepyfile(test_my_service=first_python_block())
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    # anyio runs it once per installed backend: asyncio, and trio when it is installed
    backends = 2 if importlib.util.find_spec("trio") else 1
    result.assert_outcomes(passed=backends)
