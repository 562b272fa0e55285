"""The benchmark suite imports and its pure helpers work. Nothing here is timed: CI runs the
suite itself as ``python -m bench.run --quick``."""

from __future__ import annotations

import importlib
import json
import math

import pytest

from bench.stats import (
    SCHEMA,
    Figure,
    Row,
    Target,
    format_table,
    median,
    percentile,
    results_document,
    validate_results,
)


@pytest.mark.parametrize(
    "module",
    [
        "bench.run",
        "bench.stats",
        "bench.procs",
        "bench.common",
        "bench.refs",
        "bench.hostproc",
        "bench.rtt",
        "bench.throughput",
        "bench.load",
        "bench.admission",
        "bench.attacks",
        "bench.discovery",
        "bench.cost",
        "bench.gateway",
        "bench.network_start",
        "bench.plots",
    ],
)
def test_modules_import(module: str) -> None:
    importlib.import_module(module)


def test_cli_parses_the_documented_command() -> None:
    from bench.run import CASES, parse_args

    args = parse_args(["--quick", "--only", "rtt", "load", "--out", "x.json"])
    assert args.quick and args.only == ["rtt", "load"] and str(args.out) == "x.json"
    assert set(CASES) == {
        "rtt",
        "throughput",
        "load",
        "discovery",
        "cost",
        "admission",
        "gateway",
        "network_start",
    }
    with pytest.raises(SystemExit):
        parse_args(["--only", "nope"])


def test_percentile_matches_linear_interpolation() -> None:
    samples = [5.0, 1.0, 3.0, 2.0, 4.0]
    assert percentile(samples, 0) == 1.0
    assert percentile(samples, 100) == 5.0
    assert median(samples) == 3.0
    assert percentile([1.0, 2.0], 50) == 1.5
    assert math.isclose(percentile(list(range(1, 101)), 99), 99.01)
    assert percentile([7.0], 99) == 7.0
    with pytest.raises(ValueError):
        percentile([], 50)
    with pytest.raises(ValueError):
        percentile([1.0], 101)


def test_figure_summary() -> None:
    fig = Figure.of([3.0, 1.0, 2.0, 10.0], "ms", tail=True)
    assert (fig.median, fig.min, fig.max, fig.n) == (2.5, 1.0, 10.0, 4)
    assert fig.p99 is not None and 9.0 < fig.p99 <= 10.0
    assert Figure.of([1.0], "ms").p99 is None
    assert Figure.from_json(fig.to_json()) == fig
    with pytest.raises(ValueError):
        Figure.of([], "ms")


def test_rows_ratio_and_targets() -> None:
    ours = Figure.of([2.0, 2.0, 2.0], "ms", tail=True)
    ref = Figure.of([1.0, 1.0, 1.0], "ms", tail=True)
    row = Row("rtt.job", "job", ours, ref, "raw", Target("<=", 1.3))
    assert row.ratio == 2.0 and row.met is False
    assert Row("a", "a", ours, ref, "raw", Target("<=", 2.0)).met is True
    value = Row("t", "t", Figure.of([25_000.0], "frames/s"), target=Target(">=", 20_000, "value"))
    assert value.ratio is None and value.met is True
    p99 = Row("l", "l", Figure.of([1.0] * 90 + [100.0] * 10, "ms", tail=True), stat="p99")
    p99.target = Target("<", 50, on="value")
    assert p99.value > 1.0 and p99.met is False
    assert Row("x", "x", ours).met is None
    assert Target(">=", 0.6).describe() == "ratio >= 0.6"


def test_table_formatting() -> None:
    rows = [
        Row(
            "rtt.job",
            "job",
            Figure.of([1.234, 2.0], "ms", tail=True),
            Figure.of([1.0], "ms"),
            "raw",
        ),
        Row("tput", "t", Figure.of([21_000.0], "frames/s"), target=Target(">=", 20_000, "value")),
    ]
    text = format_table(rows)
    lines = text.splitlines()
    assert lines[0].startswith("name") and "ratio" in lines[0] and "met?" in lines[0]
    assert "rtt.job" in lines[2] and "1.62x" in lines[2] and "raw" in lines[2]
    assert "21,000 frames/s" in lines[3] and lines[3].endswith("yes")
    md = format_table(rows, markdown=True).splitlines()
    assert md[0].startswith("| name |") and md[1].startswith("|---|") and len(md) == 4


def test_results_document_schema() -> None:
    row = Row(
        "rtt.job", "job", Figure.of([2.0, 3.0], "ms", tail=True), Figure.of([1.0], "ms"), "raw"
    )
    doc = results_document(
        [row], meta={"quick": True}, skipped=[{"name": "py-libp2p", "reason": "absent"}]
    )
    assert doc["schema"] == SCHEMA
    assert validate_results(json.loads(json.dumps(doc))) == []
    entry = doc["results"][0]
    assert entry["ours"]["p99"] >= entry["ours"]["median"] and entry["ours"]["n"] == 2
    assert entry["reference"]["label"] == "raw" and entry["ratio"] == 2.5

    broken = json.loads(json.dumps(doc))
    del broken["results"][0]["ours"]["median"]
    broken["results"].append(dict(doc["results"][0]))
    problems = validate_results(broken)
    assert any("missing" in p for p in problems) and any("duplicate" in p for p in problems)
    assert validate_results({"schema": "other"})
    assert validate_results([]) == ["document: not an object"]
