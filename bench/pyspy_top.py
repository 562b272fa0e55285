"""Summarise a py-spy ``--format raw`` profile (collapsed stacks, as ``--profile`` writes):
``python -m bench.pyspy_top FILE [--top N] [--filter SUBSTRING]``.

Prints the functions with the most samples on top of the stack (self) and anywhere on it
(inclusive), as percentages of all samples. Idle samples (the event loop waiting in
``select``/``epoll``) are counted apart, so the percentages are of busy time.
"""

from __future__ import annotations

import argparse
import re
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

IDLE = ("select (selectors.py", "poll (selectors.py", "_run_once (asyncio/base_events.py")
_FRAME = re.compile(r"^(?P<func>.+?) \((?P<file>[^:()]+)(?::(?P<line>\d+))?\)$")


def short(frame: str) -> str:
    """``func (path/to/pkg/mod.py:123)`` -> ``func (pkg/mod.py)``."""
    m = _FRAME.match(frame.strip())
    if not m:
        return frame.strip()
    parts = m["file"].split("/")
    return f"{m['func']} ({'/'.join(parts[-2:])})"


def parse(lines: Iterable[str]) -> list[tuple[list[str], int]]:
    stacks: list[tuple[list[str], int]] = []
    for line in lines:
        line = line.rstrip("\n")
        if not line:
            continue
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        stacks.append(([short(f) for f in stack.split(";") if f], int(count)))
    return stacks


def summarize(stacks: list[tuple[list[str], int]], top: int = 25, only: str | None = None) -> str:
    total = 0
    idle = 0
    own: Counter[str] = Counter()
    incl: Counter[str] = Counter()
    for frames, count in stacks:
        if not frames:
            continue
        leaf = frames[-1]
        if any(marker in leaf for marker in IDLE) and "select" in leaf.split(" ")[0]:
            idle += count
            continue
        if only and not any(only in f for f in frames):
            continue
        total += count
        own[leaf] += count
        for f in set(frames):
            incl[f] += count
    out = [f"busy samples: {total} (idle in the event loop's select: {idle})"]
    if not total:
        return "\n".join(out)
    out.append(f"\ntop {top} self:")
    out += [f"  {100 * n / total:5.1f}%  {f}" for f, n in own.most_common(top)]
    out.append(f"\ntop {top} inclusive:")
    out += [f"  {100 * n / total:5.1f}%  {f}" for f, n in incl.most_common(top)]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.pyspy_top")
    parser.add_argument("file", type=Path)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--filter", default=None, help="only stacks through this function")
    args = parser.parse_args(argv)
    print(summarize(parse(args.file.read_text().splitlines()), args.top, args.filter))


if __name__ == "__main__":
    main()
