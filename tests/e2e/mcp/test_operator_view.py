"""What the operator sees in the agent's terminal: problems with the configured hosts at
start (`serve --local`, `mcp --stdio`), and a WARNING line for every call that failed."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from mcp import Client

from tests.support.sshd import Sshd
from tests.support.waiting import wait_until_sync


class Agent:
    def __init__(self, *args: str, env: dict[str, str], cwd: Path) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "agent.cli", *args, "--env-file", "/dev/null"],
            env={"PATH": "/usr/bin:/bin", "HOME": str(cwd),
                 "XDG_STATE_HOME": str(cwd / "state"),
                 "PYTHONPATH": os.pathsep.join(sys.path), **env},
            cwd=cwd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True,
        )
        self.out: list[str] = []
        self.err: list[str] = []
        for stream, lines in ((self.proc.stdout, self.out), (self.proc.stderr, self.err)):
            threading.Thread(target=lambda s=stream, ls=lines: ls.extend(s), daemon=True).start()

    def wait_for(self, lines: list[str], pattern: str, within: float = 20) -> re.Match[str]:
        def printed() -> re.Match[str] | None:
            return next(filter(None, (re.search(pattern, line) for line in list(lines))), None)

        try:
            match = wait_until_sync(printed, within, f"a line matching {pattern!r}", every=0.05)
        except AssertionError as exc:
            raise AssertionError(f"{exc}; in:\n{''.join(self.out + self.err)}") from None
        assert match is not None
        return match

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=15)


@pytest.fixture
def agents() -> Iterator[list[Agent]]:
    started: list[Agent] = []
    yield started
    for agent in started:
        agent.stop()


def host_env(sshd: Sshd, known_hosts: Path) -> dict[str, str]:
    return {"REMOTE_HOST": sshd.address, "REMOTE_USER": sshd.user,
            "REMOTE_SSH_PORT": str(sshd.port), "REMOTE_SSH_KEY_PATH": str(sshd.client_key),
            "REMOTE_SSH_KNOWN_HOSTS": str(known_hosts)}


async def test_serve_local_warns_at_start_and_logs_each_failed_call(
    sshd: Sshd, tmp_path: Path, agents: list[Agent]
) -> None:
    unpinned = tmp_path / "known_hosts"
    unpinned.write_text("")
    agent = Agent("serve", "--local", "--port", "0", env=host_env(sshd, unpinned), cwd=tmp_path)
    agents.append(agent)
    url = agent.wait_for(agent.out, r"MCP endpoint: (\S+)")[1]
    # Before any call: the host key is not pinned, and the fix is on the same line.
    agent.wait_for(agent.err, r"WARNING .*default: the host key of \[127\.0\.0\.1\]:\d+ is not "
                   r"pinned .* -- fix: tailnet-agent trust default")
    async with Client(url) as client:
        refused = await client.call_tool("check_disk", {})
        assert refused.is_error
        unknown = await client.call_tool("execute_command", {"command": "rm_rf"})
        assert unknown.is_error
    # One WARNING per failed call: who, which command, which host, and the short reason.
    agent.wait_for(agent.err, r"WARNING tailnet_agent\.calls: .*disk_usage on default failed: "
                   r"the SSH host key of default .* is not in")
    agent.wait_for(agent.err, r"WARNING tailnet_agent\.calls: .*rm_rf on \(no host\) invalid: "
                   r"unknown command 'rm_rf'")
    assert not [line for line in agent.err if "Traceback" in line]


def test_mcp_stdio_without_a_host_says_so_on_stderr(tmp_path: Path,
                                                   agents: list[Agent]) -> None:
    agent = Agent("mcp", "--stdio", env={}, cwd=tmp_path)
    agents.append(agent)
    agent.wait_for(agent.err, r"WARNING .*no SSH host configured -- fix: set REMOTE_HOST and "
                   r"REMOTE_USER")
    assert agent.out == []  # stdout belongs to the protocol
