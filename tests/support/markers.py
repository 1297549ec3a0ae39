"""Markers applied by where a test lives, so no test file has to remember them."""

from __future__ import annotations

from pathlib import Path

import pytest

E2E = Path(__file__).resolve().parents[1] / "e2e"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test under tests/e2e is an end-to-end test (real sshd, tailnet or browser)."""
    for item in items:
        if item.path.is_relative_to(E2E):
            item.add_marker(pytest.mark.e2e)
