"""Destructive commands over MCP: a person's yes through elicitation, in both protocol eras."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from mcp import Client
from mcp.types import ElicitResult

from agent.hosts.inventory import HostConfig
from tests.support.agents import RunningAgent, running_agent, settings_for

CATALOG = """
commands:
  make_marker:
    description: Create the marker file (test command that changes state).
    category: Test
    template: "touch -- {path}"
    destructive: true
    parameters:
      path:
        type: path
        description: where
        roots: ["/tmp"]
"""


@pytest.fixture
async def agent(ssh_host: HostConfig, tmp_path: Path) -> AsyncIterator[RunningAgent]:
    catalog = tmp_path / "destructive.yaml"
    catalog.write_text(CATALOG)
    async with running_agent(settings_for(ssh_host), catalogs=(catalog,)) as running:
        yield running


@pytest.fixture
def marker() -> Iterator[Path]:
    # Not under pytest's 0700 tmp dirs: the sshd test user must be able to create it.
    directory = Path(tempfile.mkdtemp(prefix="tnagent-marker-"))
    directory.chmod(0o777)
    yield directory / "marker"
    shutil.rmtree(directory, ignore_errors=True)


def answering(action: str, asked: list[str]) -> Any:
    async def callback(context: Any, params: Any) -> ElicitResult:
        asked.append(params.message)
        content = {"confirm": True} if action == "accept" else None
        return ElicitResult(action=action, content=content)  # type: ignore[arg-type]

    return callback


@pytest.mark.parametrize("mode", ["auto", "legacy"])
async def test_a_confirmed_destructive_command_runs(
    agent: RunningAgent, marker: Path, mode: str
) -> None:
    asked: list[str] = []
    async with Client(agent.url, mode=mode, elicitation_callback=answering("accept", asked)) as c:
        result = await c.call_tool(
            "execute_command", {"command": "make_marker", "parameters": {"path": str(marker)}}
        )
    assert not result.is_error, result.content
    # The person saw the parameters and exactly the command line that then ran.
    rendered = result.structured_content["rendered"]  # type: ignore[index]
    (message,) = asked
    assert message.startswith(f"Run destructive command 'make_marker' on host 'test'?\n"
                              f'Parameters: {{"path": "{marker}"}}\n'
                              f"It runs exactly: {rendered}")
    assert str(marker) in rendered
    assert marker.exists()


async def test_each_confirmation_shows_its_own_call(agent: RunningAgent, marker: Path) -> None:
    # 40 destructive calls with different arguments, concurrently: every question names the
    # arguments of the call it confirms, never another's.
    asked: list[str] = []
    paths = [marker.parent / f"m{i}" for i in range(40)]
    async with Client(agent.url, mode="legacy",
                      elicitation_callback=answering("accept", asked)) as c:
        results = [await c.call_tool("execute_command", {
            "command": "make_marker", "parameters": {"path": str(path)}}) for path in paths]
    assert len(asked) == 40
    for path, result, question in zip(paths, results, asked, strict=True):
        assert not result.is_error
        assert f'"path": "{path}"' in question
        assert f"It runs exactly: {result.structured_content['rendered']}" in question  # type: ignore[index]
        assert path.exists()


@pytest.mark.parametrize("mode", ["auto", "legacy"])
async def test_a_declined_destructive_command_does_not_run(
    agent: RunningAgent, marker: Path, mode: str
) -> None:
    asked: list[str] = []
    async with Client(agent.url, mode=mode, elicitation_callback=answering("decline", asked)) as c:
        result = await c.call_tool(
            "execute_command", {"command": "make_marker", "parameters": {"path": str(marker)}}
        )
    assert result.is_error
    assert "was not confirmed" in result.content[0].text
    assert len(asked) == 1
    assert not marker.exists()


async def test_a_client_without_elicitation_is_told_where_to_confirm(
    agent: RunningAgent, marker: Path
) -> None:
    async with Client(agent.url) as c:
        result = await c.call_tool(
            "execute_command", {"command": "make_marker", "parameters": {"path": str(marker)}}
        )
    assert result.is_error
    assert "does not support elicitation" in result.content[0].text
    assert "chat page" in result.content[0].text
    assert not marker.exists()


async def test_read_only_commands_ask_nobody(agent: RunningAgent) -> None:
    asked: list[str] = []
    async with Client(agent.url, elicitation_callback=answering("accept", asked)) as c:
        result = await c.call_tool("execute_command", {"command": "hostname"})
    assert not result.is_error
    assert asked == []
