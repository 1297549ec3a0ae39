"""Every default command that needs neither docker nor systemd runs on this Debian box.

They run as the SSH layer would send them (wrap_for_exec) under /bin/sh with
the minimal environment sshd gives a non-root user, so a command that relies on
/usr/sbin in PATH, a pager or a terminal fails here rather than on a server.
"""

from __future__ import annotations

import subprocess

import pytest

from tests.support.components import require_executable
from whitelist import load_catalog, render, wrap_for_exec

NEEDS_DAEMON = {"Docker", "Services"}
# sshd's default PATH for non-root users on Debian.
ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin:/usr/games", "LANG": "C.UTF-8"}
ARGUMENTS: dict[str, dict[str, object]] = {
    "disk_usage_path": {"path": "/etc"},
    "largest_files": {"path": "/etc", "count": 5},
    "top_processes": {"count": 3},
    "top_memory_processes": {"count": 3},
}
# Nobody logged in; no routes in a loopback-only network namespace (as `make test` runs).
MAY_BE_EMPTY = {"logged_in_users", "routing_table"}

CATALOG = load_catalog()
RUNNABLE = [c.name for c in CATALOG if c.category not in NEEDS_DAEMON]


@pytest.mark.parametrize("name", RUNNABLE)
def test_default_command_runs_under_sh(name: str) -> None:
    for tool in ("timeout", "ps", "ss", "ip", "free", "du", "find", "numfmt"):
        require_executable(tool, "install coreutils, findutils, procps and iproute2")
    command = CATALOG.get(name)
    script = wrap_for_exec(render(command, ARGUMENTS.get(name, {})), timeout=command.timeout)
    result = subprocess.run(
        ["/bin/sh", "-c", script],
        capture_output=True,
        env=ENV,
        stdin=subprocess.DEVNULL,
        timeout=command.timeout + 5,
        check=False,
    )
    assert result.returncode == 0, (script, result.stderr.decode(errors="replace"))
    assert len(result.stdout) <= command.max_output
    if name not in MAY_BE_EMPTY:
        assert result.stdout.strip(), script


def test_counts_limit_output() -> None:
    command = CATALOG.get("top_processes")
    script = wrap_for_exec(render(command, {"count": 2}), timeout=10)
    result = subprocess.run(["/bin/sh", "-c", script], capture_output=True, env=ENV, check=True)
    lines = result.stdout.decode().splitlines()
    assert len(lines) == 3 and "PID" in lines[0]
    command = CATALOG.get("largest_files")
    script = wrap_for_exec(render(command, {"path": "/usr", "count": 4}), timeout=60)
    result = subprocess.run(["/bin/sh", "-c", script], capture_output=True, env=ENV, check=True)
    assert len(result.stdout.decode().splitlines()) == 4
