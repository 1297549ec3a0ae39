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


def test_a_malformed_catalog_is_refused_with_file_command_and_field(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "commands:\n  oops:\n    description: x\n    category: X\n    template: 'ls {p}'\n"
    )
    result = run_cli("serve", "--local", "--port", "0", "--catalog", str(bad),
                     "--env-file", "/dev/null")
    assert result.returncode == 2
    assert str(bad) in result.stderr and "oops" in result.stderr and "template" in result.stderr
