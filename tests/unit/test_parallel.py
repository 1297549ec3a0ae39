"""The list of slow modules the parallel run starts with names modules that exist."""

from __future__ import annotations

from pathlib import Path

from tests.support.parallel import SLOW

ROOT = Path(__file__).resolve().parents[2]


def test_every_slow_module_exists_once() -> None:
    assert len(set(SLOW)) == len(SLOW)
    assert [m for m in SLOW if not (ROOT / m).is_file()] == []
