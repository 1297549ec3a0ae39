"""Real components the end-to-end tests need, and what happens when one is missing.

On a developer's machine a missing component (sshd, Go, Chromium, root for a
network namespace) skips the test with a message saying what to install. In CI
(`CI` set in the environment, as `.ci/run` runs) the same absence is a failure:
an end-to-end test must never be skipped there.
"""

from __future__ import annotations

import os
import shutil
from typing import NoReturn

import pytest


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() not in ("", "0", "false", "no")


def missing(component: str, how_to_get_it: str) -> NoReturn:
    message = f"{component} is not available: {how_to_get_it}"
    if in_ci():
        pytest.fail(f"required in CI: {message}", pytrace=False)
    pytest.skip(message)


def require_executable(name: str, how_to_get_it: str, *candidates: str) -> str:
    """Return the path of an executable, looking on PATH and then in `candidates`."""
    found = shutil.which(name)
    if found:
        return found
    for path in candidates:
        if os.access(path, os.X_OK):
            return path
    missing(name, how_to_get_it)
