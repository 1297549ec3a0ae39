"""What a chat turn tells the page, and the turn's log of it.

The log keeps every event of the running turn, so any number of views (a reload, a
second tab, an EventSource that reconnected) can rebuild the turn from the start and
then follow it live: there is no single consumer to lose events to.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from .cards import ToolCard


@dataclass(frozen=True)
class TextStarted:
    block: str


@dataclass(frozen=True)
class TextDelta:
    block: str
    text: str


@dataclass(frozen=True)
class TextFinished:
    block: str
    text: str


@dataclass(frozen=True)
class ConfirmNeeded:
    call: str
    tool: str
    host: str
    command: str
    rendered: str
    runs_as: str | None = None  # a `become` command: the user sudo runs it as
    hosts: int | None = None  # a fan-out: how many hosts `host` (compacted) names
    strategy: str | None = None  # a fan-out: how it goes through them


@dataclass(frozen=True)
class ToolStarted:
    call: str
    tool: str
    host: str
    arguments: dict[str, Any]
    rendered: str = ""  # the command line, when the chat knows it (execute_command)

    @property
    def label(self) -> str:
        """What runs, as a person names it: the catalog command, or the tool."""
        command = self.arguments.get("command")
        if self.tool == "execute_command" and isinstance(command, str):
            return command
        return self.tool


@dataclass(frozen=True)
class ToolOutput:
    """Lines a running command printed (MCP progress), or a heartbeat while it prints none."""

    call: str
    text: str


@dataclass(frozen=True)
class ToolFinished:
    call: str
    cards: tuple[ToolCard, ...]


@dataclass(frozen=True)
class TurnFailed:
    message: str


@dataclass(frozen=True)
class TurnStopped:
    message: str


@dataclass(frozen=True)
class TurnFinished:
    pass


Event = (
    TextStarted | TextDelta | TextFinished | ConfirmNeeded | ToolStarted | ToolOutput
    | ToolFinished | TurnFailed | TurnStopped | TurnFinished
)


class EventLog:
    """Append-only; readers wait for events past the ones they have seen."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self._grown = asyncio.Event()

    def __len__(self) -> int:
        return len(self.events)

    def append(self, event: Event) -> None:
        self.events.append(event)
        # Wake every reader, and give later readers a fresh event to wait on.
        grown, self._grown = self._grown, asyncio.Event()
        grown.set()

    async def wait_past(self, seen: int) -> None:
        """Return once the log holds more than `seen` events."""
        while len(self.events) <= seen:
            await self._grown.wait()

    @property
    def finished(self) -> bool:
        return bool(self.events) and isinstance(self.events[-1], TurnFinished)
