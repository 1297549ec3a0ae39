"""Shaping a record (agent/audit/shape.py): a record already within every bound is used as
it is, without the copy `clip` makes; that must give exactly what clipping gives, for any
record, and the line returned is the shaped record's canonical JSON."""

from __future__ import annotations

import enum
import math
import random
from typing import Any

import pytest

from agent.audit.shape import (
    MAX_DEPTH,
    MAX_ITEMS,
    MAX_RECORD_BYTES,
    MAX_VALUE_CHARS,
    bounded,
    canonical,
    clip,
    shape_line,
)


class Level(enum.IntEnum):
    HIGH = 3


def leaf(rng: random.Random) -> Any:
    return rng.choice([
        "web-01", "x" * MAX_VALUE_CHARS, "y" * (MAX_VALUE_CHARS + 1), "", "é\n\u2028",
        0, -7, 2**70, True, False, None, 1.5, math.nan, math.inf, Level.HIGH,
        ("a", "tuple"), b"bytes", {1, 2},
    ])


def value(rng: random.Random, depth: int) -> Any:
    roll = rng.random()
    if depth > MAX_DEPTH + 1 or roll < 0.5:
        return leaf(rng)
    if roll > 0.97:  # a wide one holds leaves only
        return [leaf(rng) for _ in range(rng.choice([MAX_ITEMS, MAX_ITEMS + 1]))]
    size = rng.choice([0, 1, 2])
    if roll < 0.7:
        return [value(rng, depth + 1) for _ in range(size)]
    if roll > 0.95:  # a wide map of leaves, at the edge of MAX_ITEMS
        return {f"w{i}": leaf(rng) for i in range(rng.choice([MAX_ITEMS, MAX_ITEMS + 1]))}
    keys: list[Any] = [f"k{i}" if i % 2 or rng.random() < 0.9
                       else rng.choice([i, f"{'a' * 101}{i}", f"{'k' * 100}{i}"])
                       for i in range(size)]
    return {key: value(rng, depth + 1) for key in keys}


def plain_record(rng: random.Random) -> dict[str, Any]:
    """Mostly records within bounds (the fast path), some just past one bound."""
    record: dict[str, Any] = {"time": "2026-12-06T10:00:00.000+00:00", "event": "start",
                              "call": "0123456789abcdef", "identity": "me"}
    for i in range(rng.randrange(0, 8)):
        record[f"f{i}"] = value(rng, 0)
    return record


@pytest.mark.parametrize("seed", range(400))
def test_a_shaped_record_is_what_clipping_gives(seed: int) -> None:
    rng = random.Random(seed)
    record = plain_record(rng)
    shaped, line = shape_line(record)
    assert line == canonical(shaped, strict=True)
    clipped = {str(k): clip(v) for k, v in record.items()}
    if len(canonical(clipped, strict=True)) <= MAX_RECORD_BYTES:
        assert shaped == clipped
        assert line == canonical(clipped, strict=True)
    else:
        assert len(line) <= MAX_RECORD_BYTES + 2000  # summaries have their own size


def test_bounded_says_no_to_each_bound_and_each_foreign_type() -> None:
    assert bounded({"a": ["x", 1, 2.5, None, True, {"b": []}]})
    deep: Any = []
    for _ in range(MAX_DEPTH + 1):
        deep = [deep]
    for outside in ({"a": "x" * (MAX_VALUE_CHARS + 1)}, {"a": list(range(MAX_ITEMS + 1))},
                    {"a" * 101: 1}, {1: "x"}, {"a": ("t",)}, {"a": math.nan},
                    {"a": Level.HIGH}, {"a": b"x"}, {"a": deep}):
        assert not bounded(outside), outside


@pytest.mark.parametrize("levels", range(MAX_DEPTH - 2, MAX_DEPTH + 3))
@pytest.mark.parametrize("kind", ["list", "dict"])
def test_nesting_at_the_depth_bound_is_what_clipping_gives(levels: int, kind: str) -> None:
    nested: Any = "leaf"
    for _ in range(levels):
        nested = [nested] if kind == "list" else {"k": nested}
    record = {"call": "0123456789abcdef", "deep": nested}
    shaped, line = shape_line(record)
    assert shaped == {k: clip(v) for k, v in record.items()}
    assert line == canonical(shaped, strict=True)
