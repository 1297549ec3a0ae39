"""run_on_hosts' filter: JMESPath conditions on parsed rows, and what is refused before
anything runs (huge, deeply nested, costly, unknown fields and functions, mixed types, no
parser) or left undetermined on a host (bounded evaluation)."""

from __future__ import annotations

import time

import pytest

from agent.fanout import row_filter as module
from agent.fanout.row_filter import (
    MAX_LENGTH,
    FilterError,
    FilterTally,
    Unevaluable,
    compile_filter,
)
from whitelist import Command, load_catalog

CATALOG = load_catalog()
DISK = CATALOG.get("disk_usage")


def df_row(mounted_on: str, use_percent: int | None, filesystem: str = "/dev/vda1"
           ) -> dict[str, object]:
    return {"filesystem": filesystem, "size": 52613349376, "used": 48318382080,
            "available": 2576980378, "use_percent": use_percent, "mounted_on": mounted_on}


ROWS = [df_row("/", 95), df_row("/boot", 10, "/dev/vda15"), df_row("/srv", None)]


def mounts(expression: str, rows: list[dict[str, object]] | None = None,
           command: Command = DISK) -> list[object]:
    matched = compile_filter(expression, command).matching(
        ROWS if rows is None else rows, FilterTally())
    return [row["mounted_on"] for row in matched]


@pytest.mark.parametrize(("expression", "expected"), [
    ("use_percent >= `90`", ["/"]),
    ("use_percent > `90` && mounted_on == '/'", ["/"]),
    ("use_percent < `50` || mounted_on == '/'", ["/", "/boot"]),
    ("!(use_percent < `90`)", ["/", "/srv"]),  # JMESPath: null < 90 is null, !null is true
    ("starts_with(mounted_on, '/b')", ["/boot"]),
    ("contains(filesystem, 'vda15')", ["/boot"]),
    ("use_percent == `null`", ["/srv"]),
    ("`true`", ["/", "/boot", "/srv"]),
    ("`false`", []),
    ("available < `3000000000`", ["/", "/boot", "/srv"]),
])
def test_a_condition_keeps_the_rows_it_is_true_for(expression: str,
                                                   expected: list[str]) -> None:
    assert mounts(expression) == expected


def test_a_host_with_one_object_is_one_row() -> None:
    uptime = CATALOG.get("uptime")
    row = {"uptime_days": 40, "load_1m": 3.5, "users": 1}
    assert compile_filter("uptime_days > `30`", uptime).matching(row, FilterTally()) == [row]
    assert compile_filter("load_1m > `4.0`", uptime).matching(row, FilterTally()) == []


@pytest.mark.parametrize(("expression", "says"), [
    ("x" * (MAX_LENGTH + 1), f"at most {MAX_LENGTH}"),
    ("", "the filter is empty"),
    ("   ", "the filter is empty"),
    ("use_percent >= 90", "a number is written in backticks, e.g. `90`"),
    ("use_percent >= `90", "not valid JMESPath"),
    ("use_percent >=", "not valid JMESPath"),
    ("use_pct >= `90`", "'use_pct', not a field of 'disk_usage' (df); its rows have: "
                        "filesystem (text), size (integer)"),
    ("mounted_on == '/' && Use_Percent > `1`", "'Use_Percent', not a field"),
    ("use_percent >= '90'", "it compares text with a number"),
    ("filesystem > `1`", "it compares text with a number"),
    ("starts_with(use_percent, '9')", "invalid type for value"),
    ("length(`1`, `2`) > `0`", "Expected 1 argument for function length(), received 2"),
    ("eval(use_percent)", "unknown function 'eval'"),
    ("use_percent", "must be a condition, true or false for a row; it gives a number"),
    ("[mounted_on]", "it gives a list"),
    ("!" * 60 + "`true`", "nested too deeply"),
    ("(" * 190 + "`true`" + ")" * 190, "true"),  # parentheses leave no level: accepted
])
def test_refused_before_anything_runs_with_what_is_wrong(expression: str, says: str) -> None:
    if says == "true":
        assert mounts(expression) == ["/", "/boot", "/srv"]
        return
    with pytest.raises(FilterError) as caught:
        compile_filter(expression, DISK)
    message = str(caught.value)
    assert says in message
    assert "\n" not in message and len(message) < 1000
    assert "Traceback" not in message


@pytest.mark.parametrize("expression", [
    "[@,@][] | [@,@][] | [@,@][] | [@,@][] | [@,@][] | [@,@][] | [@,@][] | [@,@][] | "
    "[@,@][] | [@,@][] | [@,@][] | [@,@][] | length(@) > `0`",  # doubles 12 times
    "length(map(&map(&map(&`1`, [@,@,@,@,@,@,@,@,@,@]), [@,@,@,@,@,@,@,@,@,@]), "
    "[@,@,@,@,@,@,@,@,@,@])) > `0`",  # 1,000 evaluations nested
    "length(sort_by([values(@),values(@),values(@),values(@)][][], &to_string(@)) | "
    "[@,@,@,@][] | [@,@,@,@][] | [@,@,@,@][]) > `0`",
])
def test_a_costly_filter_is_refused_within_its_budget(expression: str) -> None:
    started = time.monotonic()
    with pytest.raises(FilterError, match="too costly"):
        compile_filter(expression, DISK)
    assert time.monotonic() - started < 1.0


def test_no_parser_no_filter() -> None:
    with pytest.raises(FilterError, match="'hostname' has no parser"):
        compile_filter("`true`", CATALOG.get("hostname"))


def test_a_row_the_filter_cannot_evaluate_makes_the_host_undetermined() -> None:
    row_filter = compile_filter("starts_with(filesystem, '/dev')", DISK)
    assert row_filter.matching([df_row("/", 1)], FilterTally()) == [df_row("/", 1)]
    with pytest.raises(Unevaluable, match="the filter failed on a row: In function "
                                          "starts_with"):
        row_filter.matching([df_row("/", 1, filesystem=None)], FilterTally())  # type: ignore[arg-type]
    long_text = df_row("/", 1, filesystem="x" * (module.MAX_TEXT + 1))
    with pytest.raises(Unevaluable, match="characters of text"):
        row_filter.matching([long_text], FilterTally())


def test_the_time_budget_covers_a_whole_fan_out(monkeypatch: pytest.MonkeyPatch) -> None:
    row_filter = compile_filter("use_percent >= `90`", DISK)
    tally = FilterTally()
    assert row_filter.matching(ROWS, tally) == [ROWS[0]]
    assert 0 < tally.spent < 0.1
    tally.spent = module.TIME_BUDGET
    with pytest.raises(Unevaluable, match="time budget"):
        row_filter.matching(ROWS, tally)
    # Mid-host: the deadline is checked as the interpreter steps.
    monkeypatch.setattr(module, "TIME_BUDGET", 1e-9)
    with pytest.raises(Unevaluable, match="time budget"):
        compile_filter("`true`", DISK).matching([df_row("/", 1)] * 200, FilterTally())


def test_the_tally_tells_which_fields_no_row_had() -> None:
    """df -P gives capacity_percent, df -hP use_percent: both are df fields, and a filter
    on the one the output does not have matches nothing; the fan-out says so."""
    row_filter = compile_filter("capacity_percent >= `90`", DISK)
    tally = FilterTally()
    assert row_filter.matching(ROWS, tally) == []
    assert tally.missing(row_filter) == ["capacity_percent"]
    assert FilterTally().missing(row_filter) == []  # no row seen: nothing to say
