"""Figures and summaries the tests leave in test-artifacts/, safe to update from parallel
test workers (pytest-xdist): each update is a read-modify-write under a file lock."""

from __future__ import annotations

import contextlib
import fcntl
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts"
# What the build and container tests measure (read by build/measure.sh).
BUILD_FIGURES = ARTIFACTS / "build-figures.json"
FIGURE_TESTS = (ROOT / "tests" / "e2e" / "build", ROOT / "tests" / "e2e" / "container")


def clear_figures_for(args: list[str], invocation_dir: Path) -> None:
    """Start a run that includes the build or container tests without old figures."""
    for arg in args:
        given = (invocation_dir / arg.split("::", 1)[0]).resolve()
        if any(given == tests or given in tests.parents or tests in given.parents
               for tests in FIGURE_TESTS):
            BUILD_FIGURES.unlink(missing_ok=True)
            return


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
