"""Output as data: what parsing and filtering cost the agent per host. Every host of a
fan-out of a parsed command has its stdout parsed by jc (agent/output/parsing.py), and with a
filter each row is evaluated (agent/fanout/row_filter.py). Timed in CPU time of this process
(the work done, whatever else the machine runs), on the outputs the scale benchmark's hosts
print (`df -hP`, 6 file systems) and on `ps` with 200 processes, with jc's size
conversion cached (what the agent does) and as jc ships it.

    python -m tests.bench.bench_parsing
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import jc.utils

from agent.fanout.row_filter import FilterTally, compile_filter
from agent.output.parsing import parse_text
from tests.bench.bench_stats import Row
from tests.bench.scale_hosts import DF_COMMON, DF_HEADER, DF_ROOT
from whitelist import load_catalog
from whitelist.parsers import PARSERS

GROUP = "output as data: CPU per host"
DF = DF_HEADER + DF_COMMON.format(root=DF_ROOT["full"])
PS = "    PID USER     %CPU %MEM   RSS     ELAPSED COMMAND\n" + "".join(
    f"{1000 + n:>7} www-data {n % 50 / 10:>4.1f}  0.{n % 10} {20000 + n:>6} {n:>2}-03:02:11 nginx\n"
    for n in range(200))


def cpu_per_call(work: Callable[[], object], calls: int) -> float:
    """Median CPU seconds per call over 5 rounds of `calls`."""
    work()
    rounds = []
    for _ in range(5):
        started = time.process_time()
        for _ in range(calls):
            work()
        rounds.append((time.process_time() - started) / calls)
    return statistics.median(rounds)


def parsing_rows() -> list[Row]:
    disk = load_catalog().get("disk_usage")
    rows_of_df = parse_text(PARSERS["df"], DF).data
    row_filter = compile_filter("use_percent >= `90`", disk)
    cached = cpu_per_call(lambda: parse_text(PARSERS["df"], DF), 300)
    convert = jc.utils.convert_size_to_int
    jc.utils.convert_size_to_int = convert.__wrapped__  # type: ignore[attr-defined]
    try:
        uncached = cpu_per_call(lambda: parse_text(PARSERS["df"], DF), 30)
    finally:
        jc.utils.convert_size_to_int = convert
    ps = cpu_per_call(lambda: parse_text(PARSERS["ps"], PS), 30)
    filtered = cpu_per_call(lambda: row_filter.matching(rows_of_df, FilterTally()), 3000)

    def row(key: str, label: str, seconds: float, note: str = "") -> Row:
        return Row(key, label, GROUP, value=round(seconds * 1e6, 1), unit="us CPU", n=5,
                   note=note)

    return [
        row("parse_df", "parse df -hP (6 file systems), jc, sizes cached", cached),
        row("parse_df_uncached", "parse df -hP, jc as shipped (no size cache)", uncached),
        row("parse_ps", "parse ps, 200 processes", ps),
        row("filter_df", "filter use_percent >= `90` on those 6 rows", filtered,
            note=f"{filtered / len(rows_of_df) * 1e6:.1f} us per row"),
    ]


if __name__ == "__main__":
    for r in parsing_rows():
        print(f"{r.label}: {r.value} {r.unit} {r.note}")
