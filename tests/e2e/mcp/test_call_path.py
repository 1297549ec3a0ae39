"""README's "One call through the packages" is the path an `execute_command` takes: the
modules it names are the ones a real call enters, in that order (a profile of the call
through the real HTTP stack, MCP SDK client and sshd)."""

from __future__ import annotations

import re
import sys
import threading
from pathlib import Path
from types import FrameType
from typing import Any

from mcp import Client

from tests.support.agents import RunningAgent

README = Path(__file__).resolve().parents[3] / "README.md"


def readme_call_path() -> list[str]:
    """The modules README's numbered list under "One call through the packages" names."""
    section = README.read_text().split("One call through the packages", 1)[1]
    steps = section.split("\n\n", 2)[1]
    paths = re.findall(r"^\d+\. `(agent/[\w/]+)\.py`", steps, re.M)
    return [p.replace("/", ".") for p in paths]


async def test_an_execute_command_goes_the_way_the_readme_says(agent: RunningAgent) -> None:
    entered: list[str] = []

    def profile(frame: FrameType, event: str, arg: Any) -> None:
        if event == "call":
            name = frame.f_globals.get("__name__", "")
            if name.startswith("agent.") and name not in entered:
                entered.append(name)

    async with Client(agent.url) as client:
        await client.call_tool("execute_command", {"command": "hostname"})  # warm
        sys.setprofile(profile)
        threading.setprofile(profile)
        try:
            result = await client.call_tool("execute_command", {"command": "hostname"})
        finally:
            sys.setprofile(None)
            threading.setprofile(None)  # type: ignore[arg-type]
    assert not result.is_error, result.content
    path = readme_call_path()
    assert len(path) >= 8, path
    assert [m for m in entered if m in path] == path, (
        f"README names {path}; the call entered, in this order: {entered}")
