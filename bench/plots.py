"""The two PNG plots of docs/benchmarks.md, drawn from a results document's ``series``:
latency vs concurrency (``bench_latency.png``) and find_host time vs network size
(``bench_discovery.png``). matplotlib is imported lazily: it is only needed here."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def write_plots(doc: dict[str, Any], out_dir: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    series = doc.get("series", {})
    machine = doc.get("meta", {}).get("machine", {})
    where = (
        f"{machine.get('nproc', '?')} cores, loopback, p2pd {str(machine.get('p2pd_sha256'))[:12]}"
    )

    load = series.get("load")
    if load and load.get("concurrency"):
        fig, (lat_ax, tput_ax) = plt.subplots(1, 2, figsize=(11, 4.2))
        c = load["concurrency"]
        lat_ax.plot(c, load["ours_p50"], "o-", color="tab:blue", label="fabstir job p50")
        lat_ax.plot(c, load["ours_p99"], "o--", color="tab:blue", label="fabstir job p99")
        lat_ax.plot(c, load["raw_p50"], "s-", color="tab:gray", label="raw daemon echo p50")
        lat_ax.plot(c, load["raw_p99"], "s--", color="tab:gray", label="raw daemon echo p99")
        lat_ax.axhline(50, color="tab:red", lw=0.8, ls=":", label="target p99 (50 ms)")
        lat_ax.set_xscale("log")
        lat_ax.set_yscale("log")
        _label(
            lat_ax, "concurrent requesters", "latency (ms)", "Job latency vs concurrency (one host)"
        )
        tput_ax.plot(c, load["ours_jobs_per_s"], "o-", color="tab:blue", label="fabstir echo jobs")
        tput_ax.plot(c, load["raw_jobs_per_s"], "s-", color="tab:gray", label="raw daemon echo")
        tput_ax.axhline(1000, color="tab:red", lw=0.8, ls=":", label="target (1,000/s)")
        tput_ax.set_xscale("log")
        _label(tput_ax, "concurrent requesters", "requests / s", "Throughput vs concurrency")
        written.append(_save(plt, fig, where, out_dir / "bench_latency.png"))

    disc = series.get("discovery")
    if disc and disc.get("hosts"):
        fig, (t_ax, q_ax) = plt.subplots(1, 2, figsize=(11, 4.2))
        n = disc["hosts"]
        t_ax.plot(n, disc["warm_p50"], "o-", label="warm find_host p50")
        t_ax.plot(n, disc["warm_p99"], "o--", label="warm find_host p99")
        t_ax.plot(n, disc["cold_median"], "s-", label="cold find_host (node start incl.)")
        t_ax.axhline(100, color="tab:red", lw=0.8, ls=":", label="warm target (100 ms)")
        t_ax.axhline(1000, color="tab:purple", lw=0.8, ls=":", label="cold target (1 s)")
        t_ax.set_yscale("log")
        _label(t_ax, "hosts in the network", "ms", "find_host time vs network size")
        q_ax.plot(n, disc["status_queries"], "o-", label="status queries per lookup")
        q_ax.plot(n, disc["candidates"], "s-", label="candidates per lookup")
        q_ax.plot(n, n, ":", color="gray", label="network size")
        _label(q_ax, "hosts in the network", "count", "Work per lookup vs network size", "major")
        written.append(_save(plt, fig, where, out_dir / "bench_discovery.png"))
    return written


def _label(ax: Any, xlabel: str, ylabel: str, title: str, grid: str = "both") -> None:
    """Axis labels, title, legend and a light grid (``grid``: which ticks get lines)."""
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(fontsize=8)
    ax.grid(True, which=grid, alpha=0.3)


def _save(plt: Any, fig: Any, where: str, path: Path) -> Path:
    """Title the figure with the machine line, write it to ``path`` and close it."""
    fig.suptitle(where, fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
