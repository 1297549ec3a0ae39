"""Per-identity chat state: the CSRF token, the running turn, pending palette runs."""

from __future__ import annotations

import asyncio
import secrets
import time
from dataclasses import dataclass, field

from agent.core.prepare import PreparedCall

from .agent_loop import ChatTurn
from .history import Conversation, HistoryStore

# Destructive palette commands waiting for a click, per person: the newest few, for a while.
MAX_PENDING_RUNS = 8
PENDING_RUN_SECONDS = 600.0


@dataclass(frozen=True)
class PendingRun:
    """A destructive palette command waiting for its confirmation click: the call as the
    confirm box showed it."""

    call: PreparedCall
    created: float = field(default_factory=time.monotonic)


@dataclass
class ChatSession:
    conversation: Conversation
    token: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    turn: ChatTurn | None = None
    task: asyncio.Task[None] | None = None
    pending_runs: dict[str, PendingRun] = field(default_factory=dict)
    streams: int = 0  # open SSE views of the running turn

    @property
    def busy(self) -> bool:
        return self.turn is not None and not self.turn.finished

    def add_pending(self, key: str, run: PendingRun) -> None:
        """Keep `run` for a click; the oldest go when there are too many (a page reload or a
        script cannot pile them up without end)."""
        self.pending_runs[key] = run
        while len(self.pending_runs) > MAX_PENDING_RUNS:
            del self.pending_runs[next(iter(self.pending_runs))]

    def take_pending(self, key: str, now: float | None = None) -> PendingRun | None:
        run = self.pending_runs.pop(key, None)
        now = time.monotonic() if now is None else now
        if run is None or now - run.created > PENDING_RUN_SECONDS:
            return None
        return run


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
