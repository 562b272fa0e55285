"""The package's layers point one way (docs/architecture.md), and modules stay small.

Every module belongs to a layer; it may import from lower layers and from its own folder,
never from a higher layer nor from a sibling layer of the same rank (discovery, host and
the client know each other only through the node interface).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import fabstir_sidecar

PACKAGE = Path(fabstir_sidecar.__file__).parent

# Lowest first. A layer is a top-level folder or module of the package.
LAYERS: dict[str, int] = {
    "_version": 0,
    "core": 0,
    "wire": 1,
    "daemon": 2,
    "rpc": 3,
    "backend": 3,
    "protocols": 4,
    "node_interface": 5,
    "discovery": 6,
    "host": 6,
    "client": 6,
    "node": 7,
    "tools": 8,
    "gateway": 9,
    "testing": 9,
    "cli": 10,
    "__init__": 11,
    "__main__": 12,
}
GENERATED = {"daemon/p2pd_pb2.py"}
MAX_LINES = 400


def modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def layer_of(path: Path) -> str:
    return path.relative_to(PACKAGE).parts[0].removesuffix(".py")


def imports_of(path: Path) -> list[tuple[int, str]]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{path}:{node.lineno}: relative import"
            if node.module == "fabstir_sidecar":  # from fabstir_sidecar import x
                found += [(node.lineno, f"fabstir_sidecar.{a.name}") for a in node.names]
            elif node.module:
                found.append((node.lineno, node.module))
    return found


def test_every_module_has_a_layer() -> None:
    unknown = {layer_of(p) for p in modules()} - set(LAYERS)
    assert not unknown, f"add these to LAYERS (and docs/architecture.md): {unknown}"


def test_imports_point_down() -> None:
    wrong = []
    for path in modules():
        here = layer_of(path)
        for line, name in imports_of(path):
            parts = name.split(".")
            if parts[0] != "fabstir_sidecar" or len(parts) < 2:
                continue
            there = parts[1]
            if there == here:
                continue
            if LAYERS[there] >= LAYERS[here]:
                wrong.append(f"{path.relative_to(PACKAGE)}:{line} imports {name}")
    assert not wrong, "imports pointing up or sideways:\n" + "\n".join(wrong)


@pytest.mark.parametrize("path", modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_modules_stay_small(path: Path) -> None:
    if str(path.relative_to(PACKAGE)) in GENERATED:
        return
    lines = len(path.read_text(encoding="utf-8").splitlines())
    assert lines <= MAX_LINES, f"{lines} lines: split it by job"


def test_only_the_daemon_layer_runs_processes_or_knows_p2pclient() -> None:
    wrong = []
    for path in modules():
        if layer_of(path) in ("daemon", "testing", "tools", "cli"):
            continue
        for line, name in imports_of(path):
            if name.split(".")[0] in ("p2pclient", "subprocess"):
                wrong.append(f"{path.relative_to(PACKAGE)}:{line} imports {name}")
    assert not wrong
