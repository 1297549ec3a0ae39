"""`make demo`'s install step on a fresh virtualenv: the app's locked dependencies only,
quietly; and an install refused when pyproject.toml and uv.lock disagree (CI fails)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from tests.support.components import missing
from tests.support.frozen import REPO

WHEELS = REPO / ".cache" / "wheels"


def offline_make(target: str, venv: Path, cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    """`make TARGET` into `venv`, from what `make wheels` left: uv's wheel in .cache/wheels
    (pip, hash-checked) and the locked packages in uv's cache (the tests' network namespace
    has no internet)."""
    if not any(WHEELS.glob("uv-*.whl")):
        missing("uv's wheel", "run `make wheels` (the tests' network namespace has no "
                "internet, so the install reads it from .cache/wheels)")
    env = {**os.environ, "PIP_NO_INDEX": "1", "PIP_FIND_LINKS": str(WHEELS), "UV_OFFLINE": "1"}
    return subprocess.run(["make", "--no-print-directory", target, f"VENV={venv}",
                           f"PY={sys.executable}"],
                          env=env, cwd=cwd, capture_output=True, text=True, timeout=900)


def test_make_app_installs_the_locked_app_only_and_quietly(tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    done = offline_make("app", venv)
    assert done.returncode == 0, done.stdout + done.stderr
    printed = [line for line in (done.stdout + done.stderr).splitlines() if line.strip()]
    # One line saying what happens; no pip or uv notice.
    assert printed == [f"Creating {venv} and installing tailnet-agent into it from uv.lock..."], \
        printed
    version = subprocess.run([str(venv / "bin" / "tailnet-agent"), "--version"],
                             capture_output=True, text=True, timeout=60)
    assert version.stdout.startswith("tailnet-agent ")
    for tool in ("pytest", "playwright", "PyInstaller", "mypy"):
        probe = subprocess.run([str(venv / "bin" / "python"), "-c", f"import {tool}"],
                               capture_output=True, timeout=60)
        assert probe.returncode != 0, f"{tool} was installed by `make demo`"
    # Exactly the versions uv.lock names, for every package installed but the venv's own pip
    # (and setuptools below Python 3.12), which come with the interpreter, and uv.
    listed = subprocess.run([str(venv / "bin" / "uv"), "pip", "list", "--format", "freeze",
                             "--python", str(venv / "bin" / "python")],
                            capture_output=True, text=True, timeout=60, check=True).stdout
    locked = locked_versions()
    installed = dict(line.split("==") for line in listed.split())
    for name, version in installed.items():
        if name not in ("pip", "setuptools", "uv", "tailnet-agent"):
            assert locked.get(name) == version, (name, version, locked.get(name))
    assert installed["cryptography"] == locked["cryptography"]


def locked_versions() -> dict[str, str]:
    import tomllib

    lock = tomllib.loads((REPO / "uv.lock").read_text())
    return {package["name"]: package["version"] for package in lock["package"]}


def test_an_install_is_refused_when_pyproject_and_the_lock_disagree(tmp_path: Path) -> None:
    """What CI (`make test`, through `make install`) does with a dependency added to
    pyproject.toml but not locked: stop, and say to update the lock."""
    project = tmp_path / "project"
    project.mkdir()
    for name in ("Makefile", "pyproject.toml", "uv.lock", "requirements-uv.txt", "README.md"):
        shutil.copy(REPO / name, project / name)
    pyproject = project / "pyproject.toml"
    text = pyproject.read_text()
    # sniffio is in the lock already (anyio needs it), so it resolves offline too: the lock is
    # refused for disagreeing, not for a package it cannot fetch.
    line = '    "pyyaml>=6",\n'
    assert line in text
    pyproject.write_text(text.replace(line, line + '    "sniffio>=1",\n'))
    done = offline_make("app", tmp_path / "venv", cwd=project)
    assert done.returncode != 0, done.stdout + done.stderr
    assert "uv.lock` needs to be updated" in done.stderr, done.stderr
    assert not (tmp_path / "venv" / "bin" / "tailnet-agent").exists()
