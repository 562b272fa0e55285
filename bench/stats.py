"""Pure helpers of the benchmark suite: statistics, comparison rows, the table, the JSON schema.

No I/O and no event loop here, so the unit tests can exercise all of it
(``tests/unit/test_bench_smoke.py``).

A *figure* is a summary of repeated samples (median, min, max, p99, n). A *row* pairs one of
our figures with a reference figure measured in the same run, their ratio, and a target.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

SCHEMA = "fabstir-bench/1"

Better = Literal["lower", "higher"]
TargetOn = Literal["ratio", "value"]
Op = Literal["<=", "<", ">=", ">"]

_OPS: dict[str, Callable[[float, float], bool]] = {
    "<=": operator.le,
    "<": operator.lt,
    ">=": operator.ge,
    ">": operator.gt,
}


def percentile(samples: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0..100) with linear interpolation between closest ranks.

    The same definition as ``numpy.percentile``'s default ("linear"). Raises ValueError
    for an empty sequence or a ``q`` outside 0..100.
    """
    if not samples:
        raise ValueError("percentile of no samples")
    if not 0.0 <= q <= 100.0:
        raise ValueError(f"q must be between 0 and 100, got {q}")
    ordered = sorted(samples)
    if len(ordered) == 1:
        return float(ordered[0])
    pos = (len(ordered) - 1) * q / 100.0
    lo = math.floor(pos)
    hi = min(lo + 1, len(ordered) - 1)
    frac = pos - lo
    return float(ordered[lo] + (ordered[hi] - ordered[lo]) * frac)


def median(samples: Sequence[float]) -> float:
    return percentile(samples, 50.0)


@dataclass(frozen=True, slots=True)
class Figure:
    """Summary of ``n`` samples in ``unit``. ``p99`` is None where a tail is meaningless."""

    unit: str
    median: float
    min: float
    max: float
    n: int
    p99: float | None = None
    mean: float | None = None

    @classmethod
    def of(cls, samples: Sequence[float], unit: str, *, tail: bool = False) -> Figure:
        if not samples:
            raise ValueError("a figure needs at least one sample")
        return cls(
            unit=unit,
            median=median(samples),
            min=float(min(samples)),
            max=float(max(samples)),
            n=len(samples),
            p99=percentile(samples, 99.0) if tail else None,
            mean=float(sum(samples) / len(samples)),
        )

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "unit": self.unit,
            "median": self.median,
            "min": self.min,
            "max": self.max,
            "n": self.n,
        }
        if self.p99 is not None:
            out["p99"] = self.p99
        if self.mean is not None:
            out["mean"] = self.mean
        return out

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> Figure:
        return cls(
            unit=str(raw["unit"]),
            median=float(raw["median"]),
            min=float(raw["min"]),
            max=float(raw["max"]),
            n=int(raw["n"]),
            p99=None if raw.get("p99") is None else float(raw["p99"]),
            mean=None if raw.get("mean") is None else float(raw["mean"]),
        )


@dataclass(frozen=True, slots=True)
class Target:
    """``<value of on> <op> <threshold>``: e.g. ratio <= 1.3, or value >= 20000."""

    op: Op
    threshold: float
    on: TargetOn = "ratio"
    text: str = ""

    def check(self, value: float | None, ratio: float | None) -> bool | None:
        subject = ratio if self.on == "ratio" else value
        if subject is None or math.isnan(subject):
            return None
        return _OPS[self.op](subject, self.threshold)

    def describe(self) -> str:
        if self.text:
            return self.text
        what = "ratio" if self.on == "ratio" else "value"
        return f"{what} {self.op} {_num(self.threshold)}"

    def to_json(self) -> dict[str, Any]:
        return {"op": self.op, "threshold": self.threshold, "on": self.on, "text": self.describe()}


@dataclass(slots=True)
class Row:
    """One comparison: our figure vs a reference measured in the same run."""

    name: str
    what: str
    ours: Figure
    reference: Figure | None = None
    reference_label: str = ""
    target: Target | None = None
    stat: Literal["median", "p99"] = "median"
    better: Better = "lower"
    notes: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def value(self) -> float:
        return (
            self.ours.p99 if self.stat == "p99" and self.ours.p99 is not None else self.ours.median
        )

    @property
    def ratio(self) -> float | None:
        """ours / reference, on medians (the same statistic on both sides)."""
        if self.reference is None or self.reference.median == 0:
            return None
        return self.ours.median / self.reference.median

    @property
    def met(self) -> bool | None:
        return None if self.target is None else self.target.check(self.value, self.ratio)

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "what": self.what,
            "ours": self.ours.to_json(),
            "reference": (
                None
                if self.reference is None
                else {"label": self.reference_label, **self.reference.to_json()}
            ),
            "ratio": self.ratio,
            "target": None if self.target is None else self.target.to_json(),
            "stat": self.stat,
            "better": self.better,
            "met": self.met,
            "notes": self.notes,
            "extra": self.extra,
        }


# ------------------------------------------------------------------ table


def _num(value: float | None) -> str:
    """Compact human formatting: 3 significant digits, thousands separators when large."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    mag = abs(value)
    if mag >= 1000:
        return f"{value:,.0f}"
    if mag >= 100:
        return f"{value:.0f}"
    if mag >= 10:
        return f"{value:.1f}"
    if mag >= 1:
        return f"{value:.2f}"
    if mag == 0:
        return "0"
    return f"{value:.3g}"


def _ours_cell(fig: Figure) -> str:
    cell = f"{_num(fig.median)}"
    if fig.p99 is not None:
        cell += f" / {_num(fig.p99)}"
    return f"{cell} {fig.unit}"


def _met_cell(met: bool | None) -> str:
    return {True: "yes", False: "NO", None: "-"}[met]


TABLE_HEADER = (
    "name",
    "ours median / p99",
    "reference median",
    "ratio",
    "target",
    "met?",
)


def table_rows(rows: Iterable[Row]) -> list[tuple[str, ...]]:
    out: list[tuple[str, ...]] = []
    for row in rows:
        ref = (
            "-"
            if row.reference is None
            else f"{_num(row.reference.median)} {row.reference.unit} ({row.reference_label})"
        )
        ratio = "-" if row.ratio is None else f"{row.ratio:.2f}x"
        target = "-" if row.target is None else row.target.describe()
        out.append((row.name, _ours_cell(row.ours), ref, ratio, target, _met_cell(row.met)))
    return out


def format_table(rows: Iterable[Row], *, markdown: bool = False) -> str:
    """A fixed-width text table (or a Markdown one) of the rows."""
    body = table_rows(rows)
    if markdown:
        lines = ["| " + " | ".join(TABLE_HEADER) + " |", "|" + "---|" * len(TABLE_HEADER)]
        lines += ["| " + " | ".join(cells) + " |" for cells in body]
        return "\n".join(lines)
    widths = [len(h) for h in TABLE_HEADER]
    for cells in body:
        widths = [max(w, len(c)) for w, c in zip(widths, cells, strict=True)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    lines = [fmt.format(*TABLE_HEADER), fmt.format(*("-" * w for w in widths))]
    lines += [fmt.format(*cells) for cells in body]
    return "\n".join(line.rstrip() for line in lines)


# ------------------------------------------------------------------- schema

_ROW_KEYS = {"name", "what", "ours", "reference", "ratio", "target", "met", "stat", "extra"}
_FIGURE_KEYS = {"unit", "median", "min", "max", "n"}


def results_document(
    rows: Sequence[Row],
    *,
    meta: Mapping[str, Any],
    skipped: Sequence[Mapping[str, str]] = (),
    series: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The JSON document ``bench.run`` writes (``validate_results`` checks its shape)."""
    return {
        "schema": SCHEMA,
        "meta": dict(meta),
        "results": [row.to_json() for row in rows],
        "skipped": [dict(s) for s in skipped],
        "series": dict(series or {}),
    }


def _has_keys(where: str, obj: Any, keys: set[str], errors: list[str]) -> bool:
    """Whether ``obj`` is an object with every one of ``keys``; if not, say so in ``errors``."""
    if not isinstance(obj, Mapping):
        errors.append(f"{where}: not an object")
        return False
    missing = keys - set(obj)
    if missing:
        errors.append(f"{where}: missing {sorted(missing)}")
    return not missing


def _check_figure(where: str, fig: Any, errors: list[str]) -> None:
    if not _has_keys(where, fig, _FIGURE_KEYS, errors):
        return
    for key in ("median", "min", "max"):
        if not isinstance(fig[key], int | float):
            errors.append(f"{where}.{key}: not a number")
    if not isinstance(fig["n"], int) or fig["n"] < 1:
        errors.append(f"{where}.n: not a positive integer")
    elif not fig["min"] <= fig["median"] <= fig["max"]:
        errors.append(f"{where}: min <= median <= max does not hold")


def validate_results(doc: Any) -> list[str]:
    """Problems with a results document; an empty list means it is well-formed."""
    errors: list[str] = []
    if not isinstance(doc, Mapping):
        return ["document: not an object"]
    if doc.get("schema") != SCHEMA:
        errors.append(f"schema: expected {SCHEMA!r}, got {doc.get('schema')!r}")
    if not isinstance(doc.get("meta"), Mapping):
        errors.append("meta: not an object")
    results = doc.get("results")
    if not isinstance(results, list):
        return [*errors, "results: not a list"]
    seen: set[str] = set()
    for i, row in enumerate(results):
        where = f"results[{i}]"
        if not _has_keys(where, row, _ROW_KEYS, errors):
            continue
        if row["name"] in seen:
            errors.append(f"{where}: duplicate name {row['name']!r}")
        seen.add(row["name"])
        _check_figure(f"{where}.ours", row["ours"], errors)
        if row["reference"] is not None:
            _check_figure(f"{where}.reference", row["reference"], errors)
            if "label" not in row["reference"]:
                errors.append(f"{where}.reference: missing label")
        if row["met"] not in (True, False, None):
            errors.append(f"{where}.met: not a boolean or null")
    skipped = doc.get("skipped", [])
    if not isinstance(skipped, list) or any(
        not isinstance(s, Mapping) or "name" not in s or "reason" not in s for s in skipped
    ):
        errors.append("skipped: expected a list of {name, reason}")
    return errors
