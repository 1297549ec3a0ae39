"""`make dist` itself: a tailscaled of any file name is embedded as `tailscaled`, and the
build fails when the built executable cannot find the tailscaled it should carry."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from tests.support.components import missing
from tests.support.frozen import REPO, executable

TRIMMED = REPO / "build" / "work" / "tailscaled-bin" / "tailscaled"
CHECK = REPO / "build" / "check-embedded.sh"


def test_the_check_passes_the_real_build() -> None:
    done = subprocess.run(["sh", str(CHECK), str(executable())], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    assert "(embedded)" in done.stdout


def test_the_check_fails_a_build_that_lost_its_tailscaled(tmp_path: Path) -> None:
    fake = tmp_path / "tailnet-agent"
    fake.write_text("#!/bin/sh\necho 'tailnet-agent 0.1.0'\n"
                    "echo 'tailscaled: not found (tailscaled not found ...)'\n")
    fake.chmod(0o755)
    done = subprocess.run(["sh", str(CHECK), str(fake)], capture_output=True, text=True)
    assert done.returncode == 1
    assert "cannot find its embedded tailscaled" in done.stderr


def test_a_tailscaled_of_any_name_is_embedded(tmp_path: Path) -> None:
    if not TRIMMED.is_file():
        missing("the trimmed tailscaled", "run `make dist` first")
    try:
        import PyInstaller  # noqa: F401
    except ImportError:
        missing("PyInstaller", "pip install -e '.[build]' (make dist does)")
    odd = tmp_path / "bin" / "tailscaled-1.98.8-custom"
    odd.parent.mkdir()
    shutil.copy2(TRIMMED, odd)
    done = subprocess.run(
        ["sh", str(REPO / "build" / "build.sh")],
        env={**os.environ, "TAILSCALED": str(odd), "DIST": str(tmp_path / "dist"),
             "PYTHON": sys.executable},
        capture_output=True, text=True, timeout=600, cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    built = tmp_path / "dist" / "tailnet-agent"
    version = subprocess.run([str(built), "version"], capture_output=True, text=True,
                             env={"PATH": "/nonexistent", "TMPDIR": str(tmp_path)}, timeout=60)
    assert "tailscaled 1.98.8" in version.stdout and "(embedded)" in version.stdout
