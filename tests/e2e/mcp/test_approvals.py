"""Time-limited approvals over MCP: the person confirming approves identical calls for some
minutes; those run without asking and cite the approval, in the result's audit record."""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from mcp import Client
from mcp.types import ElicitResult

from agent.audit.reader import read_calls
from agent.hosts.inventory import HostConfig
from tests.support.agents import RunningAgent, agent_with_catalog

CATALOG = """
commands:
  stamp:
    description: Append a line to a file (test command that changes state).
    category: Test
    template: "echo stamped >> {path}"
    destructive: true
    parameters:
      path: {type: path, description: where, roots: ["/tmp"]}
"""


@pytest.fixture
def scratch() -> Iterator[Path]:
    directory = Path(tempfile.mkdtemp(prefix="tnagent-approve-"))
    directory.chmod(0o777)
    yield directory
    shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
async def agent(ssh_host: HostConfig, tmp_path: Path) -> AsyncIterator[RunningAgent]:
    async with agent_with_catalog(ssh_host, tmp_path, CATALOG) as running:
        yield running


class Person:
    """Answers confirmations: yes, and approves identical calls for `minutes`."""

    def __init__(self, minutes: int) -> None:
        self.minutes = minutes
        self.asked: list[Any] = []

    async def __call__(self, context: Any, params: Any) -> ElicitResult:
        self.asked.append(params)
        return ElicitResult(action="accept", content={"confirm": True,
                                                      "approve_minutes": self.minutes})


async def test_identical_calls_run_without_asking_while_the_approval_lasts(
    agent: RunningAgent, scratch: Path
) -> None:
    person = Person(minutes=15)
    target = scratch / "stamps"
    other = scratch / "other"
    call = {"command": "stamp", "parameters": {"path": str(target)}}
    async with Client(agent.url, mode="legacy", elicitation_callback=person) as client:
        first = await client.call_tool("execute_command", call)
        assert not first.is_error, first.content
        schema = person.asked[0].requested_schema["properties"]["approve_minutes"]
        assert schema["maximum"] == 60  # the local operator's rule: the shipped default
        assert "up to 60 minutes" in person.asked[0].message
        for _ in range(3):
            assert not (await client.call_tool("execute_command", call)).is_error
        assert len(person.asked) == 1  # asked once for four runs
        # Another command line (another path) is not covered: asked again.
        await client.call_tool("execute_command", {"command": "stamp",
                                                   "parameters": {"path": str(other)}})
        assert len(person.asked) == 2
    assert target.read_text() == "stamped\n" * 4 and other.exists()
    calls = [c.merged() for c in read_calls(agent.service.audit.path)]
    stamps = [c for c in calls if c["command"] == "stamp"
              and c["parameters"]["path"] == str(target)]
    granted = stamps[0]["approval_granted"]
    assert granted["minutes"] == 15 and stamps[0]["confirmed"] is True
    assert [c["approval"]["id"] for c in stamps[1:]] == [granted["id"]] * 3
    assert all(c["outcome"] == "ran" for c in stamps)


async def test_this_call_only_means_asked_every_time(agent: RunningAgent, scratch: Path
                                                     ) -> None:
    person = Person(minutes=0)
    call = {"command": "stamp", "parameters": {"path": str(scratch / "once")}}
    async with Client(agent.url, mode="legacy", elicitation_callback=person) as client:
        for _ in range(2):
            assert not (await client.call_tool("execute_command", call)).is_error
    assert len(person.asked) == 2
    text = agent.service.audit.path.read_text()
    assert "approval_granted" not in text and json.loads(text.splitlines()[0])
