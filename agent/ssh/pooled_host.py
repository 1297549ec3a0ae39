"""What the SSH pool keeps for one host: its connection (or the attempt opening it), its
channel slots, the reaper of given-up commands, when it was last used, and what went
wrong last."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import asyncssh

from agent.hosts.inventory import HostConfig

from .errors import ShellNotPosix, SSHError, TimeoutMissing
from .reap import Reaper
from .slots import ChannelSlots


@dataclass(eq=False)  # one per host and connection lifetime: compared (and hashed) by identity
class HostState:
    config: HostConfig
    slots: ChannelSlots
    connecting: asyncio.Task[asyncssh.SSHClientConnection] | None = None
    conn: asyncssh.SSHClientConnection | None = None
    last_error: str | None = None
    attempts: int = 0  # connection attempts so far, successful or not
    shell_ok: bool | None = None
    shell_failures: int = 0  # persistent shells that failed to open, in a row
    last_used: float = 0.0  # monotonic time a call last started or ended (retention.py)
    waiting: int = 0  # callers waiting for this host's connection to open
    reaper: Reaper = field(init=False)

    def __post_init__(self) -> None:
        self.reaper = Reaper(self.config.name)

    def in_use(self) -> bool:
        """A call holds a channel slot (a given-up one being stopped included), waits for
        the connection, or the connection is being opened: nothing may close it now."""
        opening = self.connecting is not None and not self.connecting.done()
        return self.slots.busy > 0 or self.waiting > 0 or opening

    def live(self) -> asyncssh.SSHClientConnection | None:
        if self.conn is not None and not self.conn.is_closed():
            return self.conn
        return None

    def failed(self, exc: SSHError) -> None:
        self.last_error = str(exc)
        if isinstance(exc, ShellNotPosix | TimeoutMissing):
            self.shell_ok = False

    def status(self) -> dict[str, Any]:
        """This host's part of server_status (beside its address, port and user)."""
        return {"connected": self.live() is not None, "last_error": self.last_error,
                "shell_ok": self.shell_ok, "connects": self.attempts,
                "channels_in_use": self.slots.busy, "idle_shells": len(self.slots.idle)}

    def drop(self) -> asyncssh.SSHClientConnection | None:
        """Forget the connection (an attempt still opening closes what it opens) and the idle
        shells; returns the connection for the caller to close."""
        if self.connecting is not None and not self.connecting.done():
            self.connecting.add_done_callback(_close_opened)
            self.connecting.cancel()
        conn, self.conn = self.conn, None
        self.slots.close_idle()
        return conn


NOT_YET: dict[str, Any] = {"connected": False, "last_error": None, "shell_ok": None,
                           "connects": 0, "channels_in_use": 0, "idle_shells": 0}


def _close_opened(attempt: asyncio.Task[asyncssh.SSHClientConnection]) -> None:
    if not attempt.cancelled() and attempt.exception() is None:
        attempt.result().close()
