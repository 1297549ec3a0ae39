"""The command line as a person uses it: doctor, trust, version, --help."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.support.sshd import Sshd


def run_cli(*args: str, env: dict[str, str] | None = None, stdin: str | None = None,
            cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "agent.cli", *args],
        env={"PATH": os.environ["PATH"], "HOME": "/nonexistent", **(env or {})},
        input=stdin, capture_output=True, text=True, timeout=60, cwd=cwd,
    )


def host_env(sshd: Sshd, known_hosts: Path) -> dict[str, str]:
    return {
        "REMOTE_HOST": sshd.address,
        "REMOTE_USER": sshd.user,
        "REMOTE_SSH_PORT": str(sshd.port),
        "REMOTE_SSH_KEY_PATH": str(sshd.client_key),
        "REMOTE_SSH_KNOWN_HOSTS": str(known_hosts),
    }


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


def test_doctor_passes_on_a_good_setup(sshd: Sshd) -> None:
    result = run_cli("doctor", "--env-file", "/dev/null", env=host_env(sshd, sshd.known_hosts))
    lines = result.stdout.splitlines()
    assert any(line.startswith("OK") and "reachable, host key pinned, POSIX shell" in line
               for line in lines), lines
    assert any(line.startswith("OK") and "catalog: " in line for line in lines)
    assert all(line.split()[0] in ("OK", "FAIL", "WARN") for line in lines[:-1])


def test_doctor_says_how_to_fix_an_untrusted_host(sshd: Sshd, tmp_path: Path) -> None:
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    result = run_cli("doctor", "--env-file", "/dev/null", env=host_env(sshd, empty))
    assert result.returncode == 1
    fails = [line for line in result.stdout.splitlines() if line.startswith("FAIL")]
    # One line: what is wrong, the fingerprint to compare, and the command that fixes it.
    assert len(fails) == 1, fails
    assert "host key is not pinned" in fails[0] and "SHA256:" in fails[0]
    assert fails[0].endswith("fix: tailnet-agent trust default")


def test_trust_shows_the_fingerprint_and_pins_only_when_confirmed(
    sshd: Sshd, tmp_path: Path
) -> None:
    known = tmp_path / "known_hosts"
    env = host_env(sshd, known)
    fingerprint = subprocess.run(
        ["ssh-keygen", "-lf", f"{sshd.host_key}.pub"], capture_output=True, text=True, check=True
    ).stdout.split()[1]
    refused = run_cli("trust", "default", "--env-file", "/dev/null", env=env, stdin="")
    assert refused.returncode == 1
    assert fingerprint in refused.stdout
    assert "--yes" in refused.stderr
    assert not known.exists() or not known.read_text().strip()

    pinned = run_cli("trust", "default", "--yes", "--env-file", "/dev/null", env=env)
    assert pinned.returncode == 0, pinned.stderr
    assert f"Pinned {fingerprint}" in pinned.stdout
    assert f"[127.0.0.1]:{sshd.port}" in known.read_text()
    # now the doctor is happy with it
    doctor = run_cli("doctor", "--env-file", "/dev/null", env=env)
    assert "host key pinned" in doctor.stdout


def test_a_malformed_catalog_is_refused_with_file_command_and_field(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "commands:\n  oops:\n    description: x\n    category: X\n    template: 'ls {p}'\n"
    )
    result = run_cli("serve", "--local", "--port", "0", "--catalog", str(bad),
                     "--env-file", "/dev/null")
    assert result.returncode == 2
    assert str(bad) in result.stderr and "oops" in result.stderr and "template" in result.stderr
