"""Figures, targets and the one table the benchmark prints (and saves, and compares)."""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any


def percentile(samples: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile (no interpolation: p99 of 200 samples is the 198th)."""
    ordered = sorted(samples)
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[rank - 1]


def ratio(a: float | None, b: float | None) -> float | None:
    """a / b, or None when either is missing (or b is 0)."""
    return None if a is None or not b else a / b


@dataclass(frozen=True)
class Row:
    key: str
    label: str
    group: str
    p50_ms: float | None = None
    p99_ms: float | None = None
    n: int = 0
    value: float | None = None  # calls/s, MiB or seconds, as `unit` says
    unit: str = ""
    errors: int | None = None
    note: str = ""

    @classmethod
    def latency(cls, key: str, label: str, group: str, seconds: Sequence[float],
                note: str = "") -> Row:
        ms = [s * 1000 for s in seconds]
        return cls(key, label, group, p50_ms=statistics.median(ms), p99_ms=percentile(ms, 0.99),
                   n=len(ms), note=note)

    @classmethod
    def missing(cls, key: str, label: str, group: str, why: str) -> Row:
        return cls(key, label, group, note=f"not measured: {why}")


@dataclass(frozen=True)
class Target:
    key: str
    label: str
    measured: float | None
    limit: float | None
    # "le": measured <= limit is met; "ge": measured >= limit is met.
    sense: str = "le"
    detail: str = ""

    @property
    def met(self) -> bool | None:
        if self.measured is None or self.limit is None:
            return None
        return self.measured <= self.limit if self.sense == "le" else self.measured >= self.limit


@dataclass
class Report:
    started: str
    machine: dict[str, Any]
    rows: list[Row] = field(default_factory=list)
    targets: list[Target] = field(default_factory=list)

    def row(self, key: str) -> Row | None:
        return next((r for r in self.rows if r.key == key), None)

    def p50(self, key: str) -> float | None:
        row = self.row(key)
        return None if row is None else row.p50_ms

    def to_json(self) -> dict[str, Any]:
        return {
            "started": self.started,
            "machine": self.machine,
            "rows": [asdict(r) for r in self.rows],
            "targets": [{**asdict(t), "met": t.met} for t in self.targets],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Report:
        rows = [Row(**r) for r in data.get("rows", [])]
        targets = [Target(**{k: v for k, v in t.items() if k != "met"})
                   for t in data.get("targets", [])]
        return cls(data.get("started", "?"), data.get("machine", {}), rows, targets)


def _num(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def render(report: Report, compare: Report | None = None) -> str:
    lines = [f"tailnet-agent benchmark, {report.started}, "
             + ", ".join(f"{k}={v}" for k, v in report.machine.items()), ""]
    header = f"{'measurement':<58} {'p50 ms':>8} {'p99 ms':>8} {'n':>6} {'value':>12}"
    if compare is not None:
        header += f" {'old p50/value':>14} {'new/old':>8}"
    groups = list(dict.fromkeys(r.group for r in report.rows))  # in order of first appearance
    ordered = [r for g in groups for r in report.rows if r.group == g]
    group = None
    for row in ordered:
        if row.group != group:
            group = row.group
            lines += ["", f"== {group} ==", header]
        value = "" if row.value is None else f"{row.value:.1f} {row.unit}"
        if row.errors is not None:
            value += f" err={row.errors}"
        line = (f"{row.label:<58.58} {_num(row.p50_ms):>8} {_num(row.p99_ms):>8} "
                f"{row.n or '':>6} {value:>12}")
        if compare is not None:
            old = compare.row(row.key)
            new_figure = row.p50_ms if row.p50_ms is not None else row.value
            old_figure = None if old is None else (
                old.p50_ms if old.p50_ms is not None else old.value)
            ratio = (new_figure / old_figure) if new_figure and old_figure else None
            line += f" {_num(old_figure):>14} {_num(ratio):>8}"
        if row.note:
            line += f"  ({row.note})"
        lines.append(line)
    lines += ["", "== targets (ratios from this run) ==",
              f"{'target':<64} {'measured':>9} {'limit':>9}  result"]
    for target in report.targets:
        verdict = {True: "met", False: "NOT MET", None: "not measured"}[target.met]
        lines.append(f"{target.label:<64.64} {_num(target.measured):>9} "
                     f"{_num(target.limit):>9}  {verdict}")
        if target.detail:
            lines.append(f"    {target.detail}")
    return "\n".join(lines) + "\n"


def save(report: Report, folder: Path, stamp: str, text: str) -> tuple[Path, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    json_path = folder / f"{stamp}.json"
    txt_path = folder / f"{stamp}.txt"
    json_path.write_text(json.dumps(report.to_json(), indent=2) + "\n")
    txt_path.write_text(text)
    return json_path, txt_path
