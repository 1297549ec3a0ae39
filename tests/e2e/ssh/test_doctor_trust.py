"""`doctor` and `trust` against the real sshd, as a person runs them."""

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
        env={"PATH": os.environ["PATH"], "HOME": "/nonexistent",
             "PYTHONPATH": os.pathsep.join(sys.path), **(env or {})},
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


def test_doctor_says_check_the_key_and_user_when_authentication_fails(
    sshd: Sshd, tmp_path: Path
) -> None:
    other_key = tmp_path / "other_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other_key)],
                   check=True)
    env = {**host_env(sshd, sshd.known_hosts), "REMOTE_SSH_KEY_PATH": str(other_key)}
    result = run_cli("doctor", "--env-file", "/dev/null", env=env)
    assert result.returncode == 1
    fails = [line for line in result.stdout.splitlines() if line.startswith("FAIL")]
    assert len(fails) == 1, fails
    assert f"refused key {other_key}" in fails[0] and "authorized_keys" in fails[0]
    assert fails[0].endswith("fix: check the key file and the user name")


def test_doctor_says_check_the_name_when_it_does_not_resolve(tmp_path: Path) -> None:
    key = tmp_path / "key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    env = {"REMOTE_HOST": "no-such-host.invalid", "REMOTE_USER": "ops",
           "REMOTE_SSH_KEY_PATH": str(key), "REMOTE_SSH_KNOWN_HOSTS": str(tmp_path / "kh")}
    result = run_cli("doctor", "--env-file", "/dev/null", env=env)
    fails = [line for line in result.stdout.splitlines() if line.startswith("FAIL")]
    assert len(fails) == 1, result.stdout
    assert "cannot resolve 'no-such-host.invalid'" in fails[0]
    assert "check the name in the host configuration" in fails[0]
    assert "Traceback" not in result.stdout + result.stderr


def test_doctor_does_not_fail_a_tailnet_host_it_cannot_reach(tmp_path: Path) -> None:
    key = tmp_path / "key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    env = {"REMOTE_HOST": "100.64.0.7", "REMOTE_USER": "ops", "REMOTE_SSH_KEY_PATH": str(key),
           "REMOTE_SSH_KNOWN_HOSTS": str(tmp_path / "kh"), "TAILSCALED": "/nonexistent"}
    result = run_cli("doctor", "--env-file", "/dev/null", env=env)
    lines = result.stdout.splitlines()
    assert not [line for line in lines if line.startswith("FAIL")], result.stdout
    assert ("WARN  default: 100.64.0.7 not checked: it needs the tailnet -- run "
            "`tailnet-agent doctor --tailnet` to check it through the tailnet") in lines
    # TAILSCALED came from the environment: not "given explicitly".
    warn = next(line for line in lines if line.startswith("WARN  tailscaled:"))
    assert "'/nonexistent' (from --tailscaled or TAILSCALED)" in warn
    assert "explicitly" not in warn
