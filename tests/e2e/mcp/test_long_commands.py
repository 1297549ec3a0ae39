"""Long commands as an MCP client (the official SDK) sees them: output lines arrive as
progress notifications while the command runs, a command that reaches its catalog timeout
ends with the output so far, and a cancelled call ends the remote command."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from mcp import Client

from agent.hosts.inventory import HostConfig
from agent.mcp import progress
from tests.support.agents import RunningAgent, agent_with_catalog
from tests.support.sshd import Sshd
from tests.support.waiting import wait_until

CATALOG = """
commands:
  ticker:
    description: Print a numbered line five times a second.
    category: Test
    template: "i=0; while [ $i -lt {count} ]; do echo tick-$i; i=$((i+1)); sleep 0.2; done"
    timeout: 60
    parameters:
      count: {type: integer, description: lines, minimum: 1, maximum: 100000}
  short_fuse:
    description: Ticks past its own timeout.
    category: Test
    template: "i=0; while [ $i -lt 4321 ]; do echo fuse-$i; i=$((i+1)); sleep 0.2; done"
    timeout: 3
"""


@pytest.fixture
async def agent(ssh_host: HostConfig, tmp_path: Path) -> AsyncIterator[RunningAgent]:
    async with agent_with_catalog(ssh_host, tmp_path, CATALOG) as running:
        yield running


async def gone(sshd: Sshd, pattern: str, within: float = 5.0) -> list[str]:
    """wait_until_gone without blocking the event loop the agent serves from."""
    return await asyncio.to_thread(sshd.wait_until_gone, pattern, within)


class Progress:
    def __init__(self) -> None:
        self.events: list[tuple[float, float, str | None]] = []  # (when, progress, message)
        self.started = time.monotonic()
        self.arrived = asyncio.Event()

    async def __call__(self, progress: float, total: float | None, message: str | None) -> None:
        assert total is None  # the total is unknown
        self.events.append((time.monotonic() - self.started, progress, message))
        self.arrived.set()

    @property
    def lines(self) -> list[str]:
        return [line for _, _, m in self.events for line in (m or "").splitlines()]


async def test_output_lines_arrive_as_progress_while_the_command_runs(agent: RunningAgent
                                                                      ) -> None:
    seen = Progress()
    async with Client(agent.url) as client:
        result = await client.call_tool("execute_command", {
            "command": "ticker", "parameters": {"count": 30}}, progress_callback=seen)
    assert not result.is_error and result.structured_content is not None
    finished = time.monotonic() - seen.started
    assert result.structured_content["stdout"].splitlines() == [f"tick-{i}" for i in range(30)]
    times = [t for t, _, _ in seen.events]
    values = [p for _, p, _ in seen.events]
    # Nothing for the first seconds, then about one a second, each later than the last.
    assert times[0] >= progress.FIRST_AFTER - 0.1
    assert 2 <= len(seen.events) <= finished / progress.INTERVAL + 1
    assert values == sorted(set(values))
    # Every line shown live, in order, before the result came.
    ticks = [line for line in seen.lines if line.startswith("tick-")]
    assert ticks == [f"tick-{i}" for i in range(len(ticks))] and len(ticks) >= 15


async def test_a_quick_command_sends_no_progress(agent: RunningAgent) -> None:
    seen = Progress()
    async with Client(agent.url) as client:
        await client.call_tool("execute_command", {"command": "ticker",
                                                   "parameters": {"count": 2}},
                               progress_callback=seen)
    assert seen.events == []


async def test_the_catalog_timeout_ends_the_call_with_the_output_so_far(
    agent: RunningAgent, sshd: Sshd
) -> None:
    seen = Progress()
    started = time.monotonic()
    async with Client(agent.url) as client:
        result = await client.call_tool("execute_command", {"command": "short_fuse"},
                                        progress_callback=seen)
    took = time.monotonic() - started
    data = result.structured_content
    assert data is not None and not result.is_error
    assert data["timed_out"] and data["exit_status"] in (None, 124, 137)
    lines = data["stdout"].splitlines()
    assert lines[0] == "fuse-0" and 8 <= len(lines) <= 16
    assert "timed out after 3 s; the output so far is kept" in data["stderr"]
    assert 3 <= took < 8
    assert any("fuse-" in line for line in seen.lines)
    assert await gone(sshd, "lt 4321") == []


async def test_cancelling_the_call_ends_the_remote_command(agent: RunningAgent, sshd: Sshd
                                                           ) -> None:
    seen = Progress()
    async with Client(agent.url) as client:
        call = asyncio.create_task(client.call_tool(
            "execute_command", {"command": "ticker", "parameters": {"count": 98765}},
            progress_callback=seen))
        await asyncio.wait_for(seen.arrived.wait(), 10)
        assert sshd.processes("lt 98765")
        call.cancel()
        with pytest.raises(asyncio.CancelledError):
            await call
        assert await gone(sshd, "lt 98765", within=10) == []
        assert not (await client.call_tool("ping", {})).is_error  # the session goes on

    def cancelled_ends() -> list[dict[str, Any]]:
        records = [json.loads(line) for line in agent.service.audit.path.read_text().splitlines()]
        return [r for r in records if r["event"] == "end" and r.get("outcome") == "cancelled"]

    await wait_until(cancelled_ends, 5, "a cancelled call's end record in the audit log",
                     every=0.1)
