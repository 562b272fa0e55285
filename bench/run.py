"""Run the benchmark suite: ``python -m bench.run [--quick] [--only NAME ...] [--out FILE]``.

Prints a table (ours median / p99, the reference measured in the same run, the ratio, the
target and whether it is met), writes the JSON results (``bench.stats.validate_results``
describes the schema) and, unless ``--no-plots``, the PNG plots into docs/. Progress lines
go to stderr. ``--quick`` is the seconds-long smoke run CI uses: every case at tiny sizes.

Every p2pd started is stopped at the end: nodes are entered with ``async with``
(``DiscoveryManager`` / ``DaemonProcess`` context management) and host processes are asked
to stop; the run fails if a p2pd it started is still alive afterwards.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import os
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import anyio

from fabstir_sidecar.core.errors import DaemonNotFoundError
from fabstir_sidecar.daemon.binary import find_p2pd

from . import admission, cost, discovery, gateway, load, network_start, rtt, throughput
from .common import Ctx
from .procs import REPO_ROOT, alive, loadavg, machine_facts, p2pd_descendants, progress
from .stats import format_table, results_document, validate_results

CASES: dict[str, Callable[[Ctx], Awaitable[None]]] = {
    "rtt": rtt.run,
    "throughput": throughput.run,
    "load": load.run,
    "discovery": discovery.run,
    "cost": cost.run,
    "admission": admission.run,
    "gateway": gateway.run,
    "network_start": network_start.run,
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="seconds-long smoke run (CI)")
    parser.add_argument(
        "--only", nargs="+", choices=sorted(CASES), metavar="NAME", help=f"of {sorted(CASES)}"
    )
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "bench" / "results" / "latest.json")
    parser.add_argument("--plots", type=Path, default=REPO_ROOT / "docs", help="PNG directory")
    parser.add_argument("--no-plots", action="store_true")
    parser.add_argument("--p2pd", default=None, help="p2pd binary (default: find_p2pd())")
    parser.add_argument("--pylibp2p-python", default=None, help="interpreter with py-libp2p")
    parser.add_argument("--max-hosts", type=int, default=100, help="largest discovery network")
    parser.add_argument(
        "--profile", type=Path, default=None, help="write pyinstrument/py-spy profiles here"
    )
    parser.add_argument("--markdown", action="store_true", help="print the table as Markdown")
    return parser.parse_args(argv)


async def run_cases(ctx: Ctx, names: list[str]) -> list[str]:
    failures: list[str] = []
    for name in names:
        progress(f"== {name}")
        t0 = time.perf_counter()
        profiler = _start_profiler(ctx, name)
        try:
            await CASES[name](ctx)
        except Exception as exc:  # one broken case must not hide the others' results
            logging.getLogger("bench").exception("case %s failed", name)
            failures.append(f"{name}: {type(exc).__name__}: {exc}")
        finally:
            _stop_profiler(ctx, name, profiler)
            ctx.timings[name] = time.perf_counter() - t0
            progress(f"== {name} done in {ctx.timings[name]:.1f}s")
    return failures


def _start_profiler(ctx: Ctx, name: str) -> object | None:
    if ctx.profile_dir is None:
        return None
    try:
        from pyinstrument import Profiler
    except ImportError:
        progress("pyinstrument not installed: no client-side profile")
        return None
    profiler = Profiler(interval=0.0005, async_mode="disabled")
    profiler.start()
    return profiler


def _stop_profiler(ctx: Ctx, name: str, profiler: object | None) -> None:
    if profiler is None or ctx.profile_dir is None:
        return
    profiler.stop()  # type: ignore[attr-defined]
    text = profiler.output_text(unicode=False, color=False, show_all=False)  # type: ignore[attr-defined]
    (ctx.profile_dir / f"{name}-client.pyinstrument.txt").write_text(text)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started_at = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    logging.basicConfig(
        level=logging.ERROR, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s"
    )
    started = time.perf_counter()
    try:
        p2pd = find_p2pd(args.p2pd)
    except DaemonNotFoundError as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 2
    os.environ.setdefault("P2P_ENABLE_MDNS", "false")
    for var in ("P2P_LISTEN_ADDRESSES", "P2P_BOOTSTRAP_NODES", "P2P_DAEMON_ADDR"):
        os.environ.pop(var, None)
    pyl, reason = rtt.find_pylibp2p_python(args.pylibp2p_python)
    if args.profile:
        args.profile.mkdir(parents=True, exist_ok=True)
    ctx = Ctx(
        quick=args.quick,
        p2pd=p2pd,
        pylibp2p_python=pyl,
        pylibp2p_reason=reason,
        profile_dir=args.profile,
        max_hosts=args.max_hosts,
    )
    names = args.only or list(CASES)
    progress(f"p2pd {p2pd}; py-libp2p: {pyl or 'unavailable'}; cases {names}")
    load_before = loadavg()
    failures = anyio.run(run_cases, ctx, names)

    leftover = p2pd_descendants() + [pid for pid in ctx.daemon_pids if alive(pid)]
    leftover = sorted(set(leftover))
    if leftover:
        failures.append(f"p2pd processes left running: {leftover}")

    meta = {
        "command": "python -m bench.run " + " ".join(sys.argv[1:] if argv is None else argv),
        "started": started_at,
        "quick": args.quick,
        "cases": names,
        "duration_s": round(time.perf_counter() - started, 1),
        "case_durations_s": {k: round(v, 1) for k, v in ctx.timings.items()},
        "machine": machine_facts(p2pd),
        "loadavg_at_start": load_before,
        "pylibp2p_python": pyl,
        "failures": failures,
    }
    doc = results_document(ctx.rows, meta=meta, skipped=ctx.skipped, series=ctx.series)
    problems = validate_results(doc)
    if problems:
        failures += [f"results schema: {p}" for p in problems]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=2) + "\n")

    print(format_table(ctx.rows, markdown=args.markdown))
    if ctx.skipped:
        print()
        for skipped in ctx.skipped:
            print(f"skipped {skipped['name']}: {skipped['reason']}")
    if not args.no_plots and not args.quick:
        try:
            from .plots import write_plots

            for path in write_plots(doc, args.plots):
                progress(f"plot {path}")
        except ImportError as exc:
            progress(f"no plots (matplotlib missing: {exc})")
    progress(f"results in {args.out}; total {time.perf_counter() - started:.1f}s")
    for failure in failures:
        print(f"bench: FAILED {failure}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
