"""Per-identity chat state: the CSRF token, the running turn, pending palette runs."""

from __future__ import annotations

import asyncio
import secrets
from dataclasses import dataclass, field
from typing import Any

from .agent_loop import ChatTurn
from .history import Conversation, HistoryStore


@dataclass(frozen=True)
class PendingRun:
    """A destructive palette command waiting for its confirmation click."""

    command: str
    arguments: dict[str, Any]
    host: str | None
    rendered: str


@dataclass
class ChatSession:
    conversation: Conversation
    token: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    turn: ChatTurn | None = None
    task: asyncio.Task[None] | None = None
    pending_runs: dict[str, PendingRun] = field(default_factory=dict)

    @property
    def busy(self) -> bool:
        return self.turn is not None and not self.turn.finished


class Sessions:
    def __init__(self, history: HistoryStore) -> None:
        self.history = history
        self._sessions: dict[str, ChatSession] = {}

    def get(self, key: str) -> ChatSession:
        session = self._sessions.get(key)
        if session is None:
            session = ChatSession(conversation=self.history.get(key))
            self._sessions[key] = session
        return session

    def reset(self, key: str) -> None:
        """New chat: forget the conversation; a running turn is stopped."""
        session = self._sessions.get(key)
        if session is not None and session.task is not None and not session.task.done():
            session.task.cancel()
        self.history.clear(key)
        if session is not None:
            session.conversation = self.history.get(key)
            session.turn = None
            session.task = None
            session.pending_runs.clear()
