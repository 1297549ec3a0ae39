"""The scale benchmark's curve (figures against N), its targets and its optional plot."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from tests.bench.bench_stats import Report, Target

RESULT_BOUND = 32 * 1024  # the bound on a fan-out result


def figure(report: Report, key: str) -> float | None:
    """A row's p50 (ms) or, for a row without one, its value."""
    row = report.row(key)
    if row is None:
        return None
    return row.p50_ms if row.p50_ms is not None else row.value


def ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or not b else a / b


@dataclass(frozen=True)
class Column:
    name: str
    key: str  # row key after the size prefix; "a/b" is the ratio of two rows
    scale: float = 1.0
    digits: int = 2

    def cell(self, report: Report, prefix: str) -> str:
        if "/" in self.key:
            top, bottom = self.key.split("/")
            value = ratio(figure(report, prefix + top), figure(report, prefix + bottom))
        else:
            raw = figure(report, prefix + self.key)
            value = None if raw is None else raw * self.scale
        return "-" if value is None else f"{value:.{self.digits}f}"


LOOPBACK = (
    Column("cold host s", "cold_hostname", 1e-3), Column("floor s", "floor_exec", 1e-3),
    Column("cold/floor", "cold_hostname/floor_exec"),
    Column("warm host s", "warm_hostname", 1e-3), Column("warm fl s", "floor_warm", 1e-3),
    Column("cold df s", "cold_disk_usage", 1e-3), Column("warm df s", "warm_disk_usage", 1e-3),
    Column("1st ms", "warm_hostname_first", digits=0),
    Column("host KB", "bytes_hostname", 1e-3, 1), Column("df KB", "bytes_disk_usage", 1e-3, 1),
    Column("df>90 KB", "bytes_question", 1e-3, 1),
    Column("RSS MiB", "rss_connected", digits=1), Column("KiB/host", "rss_per_host", digits=1),
    Column("cpu cold", "cold_hostname_cpu"), Column("cpu warm", "warm_hostname_cpu"),
    Column("fl cpu", "floor_exec_cpu"),
    Column("call ms", "single_warm", digits=0), Column("reconn ms", "single_reconnect", digits=0),
    Column("idle fan s", "after_idle_hostname", 1e-3),
    Column("load1", "load1", digits=1),
)
LOOPBACK_TITLE = ("== the curve: figures against N hosts (p50; s = seconds of wall time; "
                  "cpu = ms of agent CPU per host; fl = the SSH layer alone) ==")

TAILNET = (
    Column("join s", "join", digits=1), Column("dial s", "first_dial", 1e-3),
    Column("cold s", "cold_hostname", 1e-3), Column("floor s", "floor_exec", 1e-3),
    Column("warm s", "warm_hostname", 1e-3), Column("warm fl s", "floor_warm", 1e-3),
    Column("warm df s", "warm_disk_usage", 1e-3),
    Column("1st ms", "warm_hostname_first", digits=0),
    Column("KB", "bytes_hostname", 1e-3, 1), Column("cpu warm", "warm_hostname_cpu"),
    Column("ts MiB", "tailscaled_rss", digits=0),
    Column("load1", "load1", digits=1),
)
TAILNET_TITLE = "== the tailnet curve: figures against the number of tailnet nodes (p50) =="


def curve(report: Report, title: str, label: str, prefix: str, points: Sequence[int],
          columns: Sequence[Column]) -> str:
    """One line per N: the rows `<prefix><N>_<key>` of every column."""
    lines = [title, f"{label:>5} " + " ".join(f"{c.name:>11}" for c in columns)]
    for n in points:
        lines.append(f"{n:>5} " + " ".join(f"{c.cell(report, f'{prefix}{n}_'):>11}"
                                           for c in columns))
    return "\n".join(lines) + "\n"


def targets(report: Report) -> list[Target]:
    """The issue's targets, at 1,000 and 300 hosts."""

    def seconds(key: str) -> float | None:
        value = figure(report, key)
        return None if value is None else value / 1000

    cold = figure(report, "n1000_cold_hostname")
    copies = report.row("n300_distinct_disk_usage")
    rss = figure(report, "n1000_rss_per_host")
    return [
        Target("scale_warm_1000", "1,000 hosts: warm fan-out of hostname, p50 s",
               seconds("n1000_warm_hostname"), 2.0,
               detail=f"the SSH layer alone, hostname once more on 1,000 open connections: "
                      f"{_r(seconds('n1000_floor_warm'))} s"),
        Target("scale_cold_floor_1000",
               "1,000 hosts: cold fan-out / SSH layer alone (connect + hostname)",
               ratio(cold, figure(report, "n1000_floor_exec")), 1.3,
               detail="against the N connections alone: "
                      + _r(ratio(cold, figure(report, "n1000_floor_connect")))),
        Target("scale_bytes_1000", "1,000 hosts: hostname result, bytes of text",
               figure(report, "n1000_bytes_hostname"), float(RESULT_BOUND)),
        Target("scale_rss_1000", "1,000 hosts: agent memory per connected host, MiB",
               None if rss is None else rss / 1024, 0.1),
        Target("scale_cpu_1000", "1,000 hosts: agent CPU per host, warm hostname, ms",
               figure(report, "n1000_warm_hostname_cpu"), 1.5),
        Target("scale_groups_300", "300 hosts: disk_usage (3 distinct outputs): output copies",
               None if copies is None else float(copies.note.split()[0]),
               None if copies is None else copies.value,
               detail="grouped, each distinct output appears once"),
        Target("scale_question_300",
               "300 hosts: 'disk over 90 % full?' answer, bytes of text",
               figure(report, "n300_bytes_question"), 4096.0,
               detail="disk_usage on all 300 hosts with the filter use_percent >= `90` "
                      "(6 are); unfiltered: "
                      f"{_r(figure(report, 'n300_bytes_disk_usage'))} bytes"),
    ]


def _r(x: float | None) -> str:
    return "-" if x is None else f"{x:.2f}"


def plot(report: Report, sizes: Sequence[int], path: Path) -> Path | None:
    """A PNG of the curve, when matplotlib is installed (never a dependency for it)."""
    try:
        import matplotlib  # type: ignore[import-not-found, unused-ignore]

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt  # type: ignore[import-not-found, unused-ignore]
    except ImportError:
        return None
    fig, (walls, sizes_ax) = plt.subplots(1, 2, figsize=(11, 4))
    for key, label in (("cold_hostname", "cold hostname"), ("floor_exec", "SSH floor, cold"),
                       ("warm_hostname", "warm hostname"), ("floor_warm", "SSH floor, warm"),
                       ("warm_disk_usage", "warm disk_usage")):
        points = [(n, v / 1000) for n in sizes if (v := figure(report, f"n{n}_{key}"))]
        if points:
            walls.plot(*zip(*points, strict=True), marker="o", label=label)
    walls.set(xlabel="hosts", ylabel="seconds (p50)", xscale="log", yscale="log")
    walls.legend()
    for key, label in (("bytes_hostname", "hostname"), ("bytes_disk_usage", "disk_usage")):
        points = [(n, v) for n in sizes if (v := figure(report, f"n{n}_{key}"))]
        if points:
            sizes_ax.plot(*zip(*points, strict=True), marker="o", label=label)
    sizes_ax.axhline(RESULT_BOUND, linestyle="--", color="grey", label="32 KB")
    sizes_ax.set(xlabel="hosts", ylabel="result bytes", xscale="log", yscale="log")
    sizes_ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    return path
