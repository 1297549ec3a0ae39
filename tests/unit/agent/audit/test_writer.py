"""The audit writer: bounded strict-JSON records, rotation within a budget, counted floods."""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path
from typing import Any

import pytest

from agent.access.identity import Identity
from agent.audit.reader import AuditFilter, read_calls, removals, show
from agent.audit.shape import MAX_RECORD_BYTES, canonical
from agent.audit.writer import LIMITED_WINDOW, REMOVED_EVENT, AuditLog
from tests.support.strict_json import strict

MALLORY = Identity(login=None, node="mallory", tags=("tag:mallory",))



def hostile_parameters(size: int) -> dict[str, Any]:
    return {f"k{i}": ["x" * (size // 400)] * 4 for i in range(100)}


def test_a_record_is_bounded_whatever_the_caller_sent(tmp_path: Path) -> None:
    log = AuditLog(tmp_path / "audit.jsonl")
    shapes: list[Any] = [
        hostile_parameters(900_000),
        {"a": "y" * 900_000},
        {"k" * 50_000: 1},
        {"n": [[[[[[[[[[[[["deep"]]]]]]]]]]]]]},
        {"list": list(range(100_000))},
        {"nan": float("nan"), "inf": [float("inf"), float("-inf")]},
    ]
    for parameters in shapes:
        log.start("c", MALLORY, command="c" * 100_000, host="h" * 100_000,
                  parameters=parameters)
    lines = (tmp_path / "audit.jsonl").read_text().splitlines()
    assert len(lines) == len(shapes)
    for line in lines:
        assert len(line) <= MAX_RECORD_BYTES + 200, len(line)
        strict(line)  # NaN and Infinity became strings; the line is strict JSON


def test_a_cut_value_keeps_its_length_and_the_sha256_of_all_of_it(tmp_path: Path) -> None:
    log = AuditLog(tmp_path / "audit.jsonl")
    big = "A" * 5000
    parameters = hostile_parameters(900_000)
    log.start("c1", MALLORY, command="x", parameters={"v": big})
    log.start("c2", MALLORY, command="x", parameters=parameters)
    first, second = (strict(line) for line in (tmp_path / "audit.jsonl").read_text().splitlines())
    value = first["parameters"]["v"]
    assert value.startswith("A" * 200) and "[cut: 5000 chars, sha256 " in value
    assert hashlib.sha256(big.encode()).hexdigest() in value
    summary = second["parameters"]
    assert summary["cut"] is True and summary["length"] == len(canonical(parameters))
    assert summary["sha256"] == hashlib.sha256(canonical(parameters).encode()).hexdigest()


def test_secrets_are_hidden_before_anything_is_cut(tmp_path: Path) -> None:
    secret = "sk-ant-api03-" + "s" * 40
    log = AuditLog(tmp_path / "audit.jsonl", secrets_to_hide=[secret])
    # The secret straddles the point where the value is cut.
    log.start("c", MALLORY, command="x", parameters={"v": "a" * 190 + secret + "b" * 5000})
    text = (tmp_path / "audit.jsonl").read_text()
    assert "sk-ant-api03" not in text and "[REDACTED]" in text


def test_rotation_keeps_files_within_the_budget_and_says_what_it_removed(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "audit.jsonl"
    log = AuditLog(path, max_bytes=20_000, budget=100_000)
    with caplog.at_level(logging.WARNING, logger="agent.audit.writer"):
        for n in range(3000):
            log.start(f"call{n}", MALLORY, command="uptime", parameters={"n": n})
    files = list(tmp_path.iterdir())
    assert sum(f.stat().st_size for f in files) <= 100_000 + 20_000
    # Removal records age like any other; those of the files still kept remain.
    removed = removals(path)
    assert removed and len(removed) <= log.removed
    kept = [r for r in map(strict, _lines(tmp_path)) if r.get("event") == "start"]
    assert min(int(r["call"][4:]) for r in kept) > 0  # history was removed...
    for record in removed:  # ... and what was removed is on record
        assert record["event"] == REMOVED_EVENT and record["bytes"] > 0
        assert record["first"] and record["last"] and record["file"].startswith("audit.jsonl.")
    assert max(r["last"] for r in removed) <= min(r["time"] for r in kept)
    warnings = [r.getMessage() for r in caplog.records if "budget" in r.getMessage()]
    assert len(warnings) == log.removed and "TAILNET_AGENT_AUDIT_BUDGET" in warnings[0]
    shown = show(path, AuditFilter(), as_json=False)
    assert any("was removed (audit budget reached)" in line for line in shown)


def _lines(directory: Path) -> list[str]:
    return [line for f in sorted(directory.iterdir()) for line in f.read_text().splitlines()]


def test_a_caller_over_its_rate_limit_is_counted_not_recorded_call_by_call(
    tmp_path: Path,
) -> None:
    log = AuditLog(tmp_path / "audit.jsonl")
    decisions = [log.limited(MALLORY, now=1000.0 + i * 0.001) for i in range(5000)]
    assert decisions[0] is True and not any(decisions[1:])
    log.flush_limited(now=1000.0 + LIMITED_WINDOW + 1)
    (record,) = [strict(line) for line in (tmp_path / "audit.jsonl").read_text().splitlines()]
    assert record["event"] == "limited" and record["calls"] == 4999
    assert record["identity"] == "tag:mallory"
    assert read_calls(tmp_path / "audit.jsonl") == []
    # The next window starts over with one recorded call.
    assert log.limited(MALLORY, now=1000.0 + 2 * LIMITED_WINDOW + 2) is True
