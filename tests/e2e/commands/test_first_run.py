"""The first ten minutes, tried as a new user would: every mistake ends with one line on
stderr that says what to do next, a non-zero exit, and no traceback.

Each case runs the real command line in an empty directory with an empty HOME, so
nothing on this machine (a .env, a ~/.ssh, a tailscaled on PATH) helps or hides.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from agent.cli import build_parser


@dataclass
class Place:
    cwd: Path
    home: Path
    tmp: Path

    def run(self, *args: str, env: dict[str, str] | None = None,
            timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "agent.cli", *args],
            # PATH points at an empty directory: no tailscaled, no ssh, nothing to lean on.
            env={"PATH": str(self.tmp / "empty-bin"), "HOME": str(self.home),
                 "TMPDIR": str(self.tmp), "XDG_STATE_HOME": str(self.home / "state"),
                 "PYTHONPATH": os.pathsep.join(sys.path), **(env or {})},
            cwd=self.cwd, capture_output=True, text=True, timeout=timeout,
        )


@pytest.fixture
def place(tmp_path: Path) -> Place:
    for name in ("cwd", "home", "tmp", "tmp/empty-bin"):
        (tmp_path / name).mkdir()
    return Place(tmp_path / "cwd", tmp_path / "home", tmp_path / "tmp")


def last_line(result: subprocess.CompletedProcess[str], *phrases: str, code: int = 1) -> str:
    """The one line a person reads: the last on stderr. Checks the exit code and that no
    traceback was printed anywhere."""
    assert "Traceback" not in result.stdout + result.stderr, result.stderr
    assert result.returncode == code, (result.returncode, result.stdout, result.stderr)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines, "nothing on stderr"
    for phrase in phrases:
        assert phrase in lines[-1], (phrase, lines[-1])
    return lines[-1]


@pytest.fixture
def busy_port() -> Iterator[int]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


def test_serve_without_tailscaled_says_how_to_get_one(place: Place) -> None:
    line = last_line(place.run("serve"), "tailscaled not found", "go install",
                     "`serve --local`", "`demo` need no tailscaled")
    assert line.startswith("tailnet-agent: ")


def test_a_tailscaled_path_that_is_not_executable(place: Place) -> None:
    last_line(place.run("serve", env={"TAILSCALED": str(place.tmp / "nope")}),
              "from --tailscaled or TAILSCALED", "is not an executable file")


@pytest.mark.parametrize("command", [["demo"], ["serve", "--local"]])
def test_a_port_in_use_suggests_port_0(place: Place, busy_port: int, command: list[str]) -> None:
    result = place.run(*command, "--port", str(busy_port),
                       env={"REMOTE_HOST": "127.0.0.1", "REMOTE_USER": "nobody"})
    last_line(result, f"port {busy_port} on 127.0.0.1 is already in use", "--port 0", code=2)
    # The demo's private directory (it holds a private key) is gone too.
    assert not list(place.tmp.glob("tailnet-agent-demo-*"))


@pytest.mark.parametrize(("args", "env", "phrases"), [
    (["--inventory", "hosts.yaml"], {}, ["cannot read inventory hosts.yaml", "--inventory"]),
    ([], {"TAILNET_AGENT_INVENTORY": "gone.yaml"}, ["cannot read inventory gone.yaml"]),
    (["--policy", "policy.yaml"], {}, ["cannot read policy policy.yaml", "--policy"]),
    (["--catalog", "mine.yaml"], {}, ["mine.yaml", "cannot read the file", "check the path"]),
    (["--env-file", "prod.env"], {}, ["--env-file prod.env: no such file"]),
    ([], {"REMOTE_HOST": "web1"}, ["REMOTE_USER is not", "set REMOTE_USER"]),
    ([], {"REMOTE_HOST": "web1", "REMOTE_USER": "u", "REMOTE_SSH_PORT": "ssh"},
     ["REMOTE_SSH_PORT='ssh' is not an integer"]),
    ([], {"TAILNET_AGENT_MAX_SESSIONS": "50"}, ["below sshd's MaxSessions"]),
])
def test_missing_files_and_bad_settings(place: Place, args: list[str], env: dict[str, str],
                                        phrases: list[str]) -> None:
    last_line(place.run("serve", "--local", "--port", "0", *args, env=env), *phrases, code=2)


@pytest.mark.parametrize(("flag", "name"), [("--inventory", "inventory"),
                                            ("--policy", "policy")])
def test_bad_yaml_is_one_line_with_where(place: Place, flag: str, name: str) -> None:
    (place.cwd / "bad.yaml").write_text("hosts: [\n  {name: a\n")
    line = last_line(place.run("serve", "--local", "--port", "0", flag, "bad.yaml"),
                     f"{name} bad.yaml is not valid YAML", "at line", "fix the syntax", code=2)
    assert "<unicode string>" not in line


def test_a_catalog_with_several_problems_ends_with_what_to_do(place: Place) -> None:
    (place.cwd / "cat.yaml").write_text(
        "commands:\n  a:\n    description: x\n    category: X\n    template: 'ls {p}'\n"
        "  b:\n    category: X\n    template: ls\n")
    result = place.run("serve", "--local", "--port", "0", "--catalog", "cat.yaml")
    last_line(result, "fix the", "problems above in cat.yaml", code=2)
    assert "placeholder {p}" in result.stderr and "'description' is required" in result.stderr


@pytest.mark.parametrize("args", [["serve", "--port", "x"], ["serve", "--port", "70000"],
                                  ["serve", "--nope"], ["bogus"], ["trust"]])
def test_bad_flags_get_usage_and_one_error_line(place: Place, args: list[str]) -> None:
    line = last_line(place.run(*args), "error:", code=2)
    assert line.startswith("tailnet-agent")


def test_audit_with_a_bad_since(place: Place) -> None:
    (place.home / "state" / "tailnet-agent").mkdir(parents=True)
    (place.home / "state" / "tailnet-agent" / "audit.jsonl").write_text("")
    last_line(place.run("audit", "--since", "yesterday"), "use a duration like 90s", code=2)


def test_version_flag(place: Place) -> None:
    result = place.run("--version")
    assert result.returncode == 0
    assert result.stdout.strip().startswith("tailnet-agent 0.")


def _subcommands() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    actions = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(actions[0].choices)


@pytest.mark.parametrize("name", sorted(_subcommands()))
def test_every_subcommand_describes_itself(place: Place, name: str) -> None:
    sub = _subcommands()[name]
    assert sub.description and len(sub.description) > 20
    out = place.run(name, "--help").stdout
    assert sub.description.split()[0] in out
    # pipx and single-executable users have no README at hand: help must not send them there.
    assert "README" not in out


def test_top_level_help_lists_settings_and_no_readme(place: Place) -> None:
    out = place.run("--help").stdout
    assert "README" not in out
    for variable in ("REMOTE_HOST", "TS_AUTHKEY", "ANTHROPIC_API_KEY", "TAILNET_AGENT_POLICY"):
        assert variable in out


def test_trust_help_names_a_way_to_list_hosts(place: Place) -> None:
    help_text = " ".join(place.run("trust", "--help").stdout.split())  # argparse wraps lines
    assert "(`tailnet-agent hosts` lists them)" in help_text


def test_hosts_lists_what_is_configured(place: Place) -> None:
    nothing = place.run("hosts")
    assert nothing.returncode == 1 and "no SSH host configured" in nothing.stdout
    listed = place.run("hosts", env={"REMOTE_HOST": "10.0.0.7", "REMOTE_USER": "ops"})
    assert listed.returncode == 0
    assert "default (default)  ops@10.0.0.7:22  host key not pinned: tailnet-agent trust " \
        "default" in listed.stdout
