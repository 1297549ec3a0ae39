"""The README's run command: `tailnet-agent demo`, tried as a new user would."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from mcp import Client

from agent.commands.demo import start_demo_target
from agent.ssh import SSHPool
from whitelist import load_catalog, render


@dataclass
class Demo:
    url: str
    proc: subprocess.Popen[str]
    lines: list[str]
    tmp: Path  # its TMPDIR
    home: Path  # its HOME (XDG_STATE_HOME unset): where a stray audit log would land


@pytest.fixture
def demo(tmp_path: Path) -> Iterator[Demo]:
    cwd, tmp, home = tmp_path / "cwd", tmp_path / "tmp", tmp_path / "home"
    for directory in (cwd, tmp, home):
        directory.mkdir()
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("REMOTE_", "ANTHROPIC_", "XDG_", "TAILNET_AGENT_"))}
    proc = subprocess.Popen(
        [sys.executable, "-m", "agent.cli", "demo", "--port", "0"],
        cwd=cwd,  # an empty directory: no .env, no config
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**env, "TMPDIR": str(tmp), "HOME": str(home),
             "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    assert proc.stdout is not None
    url = None
    deadline = time.monotonic() + 120  # a bound for a loaded machine, not a wait
    lines = []
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line)
        if match := re.search(r"MCP endpoint: (http://127\.0\.0\.1:\d+/mcp)", line):
            url = match.group(1)
        if line.startswith("Ready."):
            break
    assert url, "demo printed no MCP URL:\n" + "".join(lines)
    assert any('"url": "' + url + '"' in line for line in lines), "no client configuration"
    assert len(list(tmp.glob("tailnet-agent-demo-*"))) == 1  # its private directory
    yield Demo(url, proc, lines, tmp, home)
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=15)


def stop(demo: Demo, sig: signal.Signals) -> str:
    demo.proc.send_signal(sig)
    rest, _ = demo.proc.communicate(timeout=15)
    assert demo.proc.returncode == 0
    return "".join(demo.lines) + rest


async def test_demo_answers_check_disk_with_real_df(demo: Demo) -> None:
    async with Client(demo.url) as client:
        tools = {t.name for t in (await client.list_tools()).tools}
        assert "check_disk" in tools
        result = await client.call_tool("check_disk", {})
        for _ in range(5):  # more calls: the fast path's shells are opened and reused
            again = await client.call_tool("check_memory", {})
            assert not again.is_error
    assert not result.is_error, result.content
    assert "Filesystem" in result.structured_content["stdout"]
    assert result.structured_content["host"] == "demo"
    output = stop(demo, signal.SIGINT)
    # The embedded target accepts shell channels, so the fast path works and warns of nothing.
    assert "WARNING" not in output and "exec channels only" not in output, output


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
async def test_demo_leaves_nothing_behind(demo: Demo, sig: signal.Signals) -> None:
    async with Client(demo.url) as client:
        assert not (await client.call_tool("check_disk", {})).is_error
    stop(demo, sig)
    # The private directory (it holds the demo's private key) is gone...
    assert not list(demo.tmp.glob("tailnet-agent-demo-*"))
    # ...and the call was audited there, not in the user's real audit log.
    assert not list(demo.home.rglob("audit.jsonl*"))


async def test_the_demo_target_serves_the_fast_path(tmp_path: Path) -> None:
    target = await start_demo_target(tmp_path)
    pool = SSHPool({"demo": target.host})
    try:
        command = load_catalog().get("hostname")
        for _ in range(3):
            result = await pool.run("demo", render(command, {}), command_name="hostname",
                                    timeout=10, max_output=10_000)
            assert result.exit_status == 0 and result.stdout.strip()
        assert pool.shells("demo") == 1  # one persistent shell, reused
    finally:
        await pool.close()
        target.close()
