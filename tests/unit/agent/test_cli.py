"""The command line as a person uses it: --help, version, a malformed catalog."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def run_cli(*args: str, env: dict[str, str] | None = None, stdin: str | None = None,
            cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "agent.cli", *args],
        env={"PATH": os.environ["PATH"], "HOME": "/nonexistent", **(env or {})},
        input=stdin, capture_output=True, text=True, timeout=60, cwd=cwd,
    )


def test_help_lists_every_command() -> None:
    out = run_cli("--help").stdout
    for command in ("serve", "mcp", "demo", "doctor", "trust", "version"):
        assert command in out
    assert "tailnet-agent demo" in out  # the quick start


def test_version_names_ours_and_tailscaled() -> None:
    result = run_cli("version")
    assert result.returncode == 0
    assert result.stdout.startswith("tailnet-agent 0.")
    assert "tailscaled" in result.stdout


def test_version_verbose_lists_the_installed_packages_the_agent_runs_on() -> None:
    """From the source tree (or pip): the app's requirements, transitively, with the
    versions installed here; the test tools installed beside them are not the app's."""
    from importlib import metadata

    result = run_cli("version", "--verbose")
    assert result.returncode == 0, result.stderr
    listed = dict(line.split() for line in result.stdout.splitlines() if line.startswith("  "))
    for name in ("asyncssh", "cryptography", "mcp", "uvicorn", "bcrypt", "pydantic-core"):
        assert listed.get(name) == metadata.version(name), (name, result.stdout)
    assert not {"pytest", "mypy", "pyinstaller", "ruff"} & set(listed), result.stdout
    assert f"({len(listed)} packages, Python " in result.stdout


def test_output_cut_short_by_its_reader_is_no_error() -> None:
    """`tailnet-agent version -v | head -1`: the pipe closes early; no message about it."""
    done = subprocess.run(f"{sys.executable} -m agent.cli version -v | head -n 1",
                          shell=True, capture_output=True, text=True, timeout=60,
                          env={"PATH": os.environ["PATH"], "HOME": "/nonexistent",
                               "PYTHONPATH": os.pathsep.join(sys.path)})
    assert done.stdout.startswith("tailnet-agent "), done.stdout
    assert done.stderr == "", done.stderr


def test_a_malformed_catalog_is_refused_with_file_command_and_field(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "commands:\n  oops:\n    description: x\n    category: X\n    template: 'ls {p}'\n"
    )
    result = run_cli("serve", "--local", "--port", "0", "--catalog", str(bad),
                     "--env-file", "/dev/null")
    assert result.returncode == 2
    assert str(bad) in result.stderr and "oops" in result.stderr and "template" in result.stderr
