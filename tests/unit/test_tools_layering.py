"""The CLI sits on tools, tools on the library: nothing below imports tools or cli, and
tools never imports cli."""

from __future__ import annotations

import ast
from pathlib import Path

import fabstir_sidecar

PACKAGE = Path(fabstir_sidecar.__file__).parent


def imported(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def layer(path: Path) -> str:
    return path.relative_to(PACKAGE).parts[0].removesuffix(".py")


def within(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


def test_imports_point_down_to_tools_and_never_up_to_cli() -> None:
    wrong = []
    for path in PACKAGE.rglob("*.py"):
        here = layer(path)
        for name in imported(path):
            if within(name, "fabstir_sidecar.cli") and here not in ("cli", "__main__"):
                wrong.append((path.name, name))
            if within(name, "fabstir_sidecar.tools") and here not in ("cli", "tools"):
                wrong.append((path.name, name))
    assert not wrong
