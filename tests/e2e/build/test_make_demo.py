"""`make demo`'s install step on a fresh virtualenv: the app's dependencies only, quietly."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.components import missing

from .frozen import REPO

pytestmark = pytest.mark.e2e


WHEELS = REPO / ".cache" / "wheels"


def test_make_app_installs_the_app_only_and_quietly(tmp_path: Path) -> None:
    if not any(WHEELS.glob("*.whl")):
        missing("the app's wheels", "run `make wheels` (the tests' network namespace has no "
                "internet, so the install reads them from .cache/wheels)")
    venv = tmp_path / "venv"
    done = subprocess.run(["make", "--no-print-directory", "app", f"VENV={venv}",
                           f"PY={sys.executable}"],
                          env={**os.environ, "PIP_NO_INDEX": "1", "PIP_FIND_LINKS": str(WHEELS)},
                          cwd=REPO, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout + done.stderr
    printed = [line for line in (done.stdout + done.stderr).splitlines() if line.strip()]
    # One line saying what happens; no editable-install warning, no pip notice.
    assert printed == [f"Creating {venv} and installing tailnet-agent into it (a minute or two "
                       "the first time)..."], printed
    version = subprocess.run([str(venv / "bin" / "tailnet-agent"), "--version"],
                             capture_output=True, text=True, timeout=60)
    assert version.stdout.startswith("tailnet-agent ")
    for tool in ("pytest", "playwright", "PyInstaller", "mypy"):
        probe = subprocess.run([str(venv / "bin" / "python"), "-c", f"import {tool}"],
                               capture_output=True, timeout=60)
        assert probe.returncode != 0, f"{tool} was installed by `make demo`"
