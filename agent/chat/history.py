"""One person's conversation: what Claude sees (API messages) and what the page shows.

The two lists are kept apart because they differ: Claude needs tool_use /
tool_result pairs and nothing else, the page needs cards, errors and markdown.
Both are bounded; the oldest whole turns go first, so what remains always starts
with a user's question and stays a valid Messages API history.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass, field
from typing import Any, Literal

from .cards import ToolCard

MAX_TURNS = 30
# Counts what Claude is sent (tool output there is clipped) and what the page shows
# (whole command output, up to each command's max_output).
MAX_BYTES = 2_000_000

ItemKind = Literal["user", "assistant", "card", "error", "notice"]


@dataclass(frozen=True)
class DisplayItem:
    kind: ItemKind
    text: str = ""
    card: ToolCard | None = None

    @property
    def size(self) -> int:
        card = self.card
        extra = len(card.stdout) + len(card.stderr) + len(card.output) if card else 0
        return len(self.text) + extra


@dataclass
class Turn:
    """One question and everything that answered it."""

    messages: list[dict[str, Any]] = field(default_factory=list)
    items: list[DisplayItem] = field(default_factory=list)
    id: str = field(default_factory=lambda: secrets.token_hex(8))  # its ChatTurn's id


@dataclass
class Conversation:
    turns: list[Turn] = field(default_factory=list)
    max_turns: int = MAX_TURNS
    max_bytes: int = MAX_BYTES

    def messages(self) -> list[dict[str, Any]]:
        return [m for turn in self.turns for m in turn.messages]

    def items(self) -> list[DisplayItem]:
        return [i for turn in self.turns for i in turn.items]

    def add(self, turn: Turn) -> None:
        """Keep a finished (or failed, but made consistent) turn, then trim old ones."""
        self.turns.append(turn)
        self._trim()

    def _trim(self) -> None:
        while len(self.turns) > self.max_turns:
            self.turns.pop(0)
        # The newest turn is kept whatever its size: dropping it would lose the answer
        # the person just got.
        while len(self.turns) > 1 and self._bytes() > self.max_bytes:
            self.turns.pop(0)

    def _bytes(self) -> int:
        return sum(
            sum(len(json.dumps(m, default=str)) for m in turn.messages)
            + sum(item.size for item in turn.items)
            for turn in self.turns
        )


class HistoryStore:
    """Conversations by identity key (see `agent.access.identity.Identity.key`), in memory."""

    def __init__(self, *, max_turns: int = MAX_TURNS, max_bytes: int = MAX_BYTES) -> None:
        self._conversations: dict[str, Conversation] = {}
        self._max_turns = max_turns
        self._max_bytes = max_bytes

    def get(self, key: str) -> Conversation:
        conversation = self._conversations.get(key)
        if conversation is None:
            conversation = Conversation(max_turns=self._max_turns, max_bytes=self._max_bytes)
            self._conversations[key] = conversation
        return conversation

    def clear(self, key: str) -> None:
        self._conversations.pop(key, None)


def close_failed_turn(turn: Turn, message: str,
                      results: list[dict[str, Any]] | None = None) -> None:
    """Make a turn that failed or was stopped part-way a valid history to send the next
    question with.

    Every tool_use needs its tool_result (`results` holds those that came back before
    the end), and roles must alternate; the closing assistant message also tells
    Claude, next time, that this question got no answer.
    """
    last = turn.messages[-1]
    if last["role"] == "assistant":
        content = last["content"]
        uses = [b["id"] for b in content if b.get("type") == "tool_use"] \
            if isinstance(content, list) else []
        if not uses:
            return  # the answer is complete; what failed came after it
        answered = {r["tool_use_id"]: r for r in results or ()}
        turn.messages.append({"role": "user", "content": [
            answered.get(use) or {"type": "tool_result", "tool_use_id": use, "is_error": True,
                                  "content": f"No result: the turn ended ({message})."}
            for use in uses
        ]})
    turn.messages.append({"role": "assistant", "content": f"(No answer: {message})"})
