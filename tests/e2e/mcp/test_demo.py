"""The README's run command: `tailnet-agent demo`, tried as a new user would."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest
from mcp import Client


@pytest.fixture
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    cwd = tmp_path_factory.mktemp("demo")  # an empty directory: no .env, no config
    proc = subprocess.Popen(
        [sys.executable, "-m", "agent.cli", "demo", "--port", "0"],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={k: v for k, v in os.environ.items() if not k.startswith(("REMOTE_", "ANTHROPIC_"))},
    )
    assert proc.stdout is not None
    url = None
    deadline = time.monotonic() + 30
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
    yield url, proc
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=15)


async def test_demo_answers_check_disk_with_real_df(
    demo: tuple[str, subprocess.Popen[str]],
) -> None:
    url, _proc = demo
    async with Client(url) as client:
        tools = {t.name for t in (await client.list_tools()).tools}
        assert "check_disk" in tools
        result = await client.call_tool("check_disk", {})
    assert not result.is_error, result.content
    assert "Filesystem" in result.structured_content["stdout"]
    assert result.structured_content["host"] == "demo"


async def test_demo_stops_cleanly_on_sigterm(demo: tuple[str, subprocess.Popen[str]]) -> None:
    _url, proc = demo
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=15) == 0
