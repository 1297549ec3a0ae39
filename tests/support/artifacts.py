"""Figures and summaries the tests leave in test-artifacts/, safe to update from parallel
test workers (pytest-xdist): each update is a read-modify-write under a file lock."""

from __future__ import annotations

import contextlib
import fcntl
import json
from pathlib import Path

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"


def update_json(path: Path, key: str, value: object) -> None:
    """Set `key` in the JSON object in `path` (created if missing) to `value`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        found: dict[str, object] = {}
        with contextlib.suppress(OSError, ValueError):
            found = json.loads(path.read_text())
        found[key] = value
        path.write_text(json.dumps(found, indent=2, sort_keys=True) + "\n")
