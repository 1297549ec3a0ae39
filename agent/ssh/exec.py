"""The exec path: one SSH exec channel per command, output collected up to fixed caps.

Destructive and long commands always take this path, and so does anything the
fast path (agent/ssh/shell.py) cannot take.
"""

from __future__ import annotations

import asyncio

import asyncssh

from agent.output.spool import CommandOutput

from .collected import STDERR, STDOUT
from .reap import PgidReader

# After the remote `timeout` should have fired (and its KILL 2 s later), give the
# channel this long before killing it from our side.
CLIENT_GRACE_SECONDS = 5.0


class CappedSession(asyncssh.SSHClientSession[bytes]):
    """Collects stdout/stderr into a CommandOutput; past a cap it closes the channel."""

    def __init__(self, output: CommandOutput) -> None:
        self.output = output
        self.exit_status: int | None = None
        self.exit_signal: str | None = None
        self.lost: Exception | None = None  # set when the connection died under the channel
        self.done: asyncio.Event = asyncio.Event()
        self.reader = PgidReader()  # the wrapper's report of the command's process group
        self.chan: asyncssh.SSHClientChannel[bytes] | None = None

    def connection_made(self, chan: asyncssh.SSHClientChannel[bytes]) -> None:
        self.chan = chan

    @property
    def overflow(self) -> dict[int | None, bool]:
        return {STDOUT: self.output.stdout.overflow, STDERR: self.output.stderr.overflow}

    def data_received(self, data: bytes, datatype: asyncssh.DataType) -> None:
        stderr = bool(datatype)
        if stderr:
            data = self.reader.feed(data)  # the wrapper's report is not the command's output
        self._keep(stderr, data)

    def _keep(self, stderr: bool, data: bytes) -> None:
        if not data or self.output.spool(stderr).overflow:
            return
        if not self.output.feed(stderr, data) and self.chan is not None:
            # Stop the transfer: keeping memory bounded is not enough, output past the
            # cap should not cross the tailnet only to be thrown away.
            self.chan.close()

    def exit_status_received(self, status: int) -> None:
        self.exit_status = status

    def exit_signal_received(self, signal: str, core_dumped: bool, msg: str, lang: str) -> None:
        self.exit_signal = signal

    def connection_lost(self, exc: Exception | None) -> None:
        self._keep(True, self.reader.flush())
        self.lost = exc
        self.done.set()

    def flush(self) -> None:
        """Nothing is held back on an exec channel."""


async def wait_exec(
    session: CappedSession,
    timeout: float,  # noqa: ASYNC109 - the remote `timeout` enforces it, we back it up
) -> bool:
    """Wait for the command to end; True when it outlived our backup timer (the caller
    then stops its process group, see agent.ssh.reap)."""
    try:
        async with asyncio.timeout(timeout + CLIENT_GRACE_SECONDS):
            await session.done.wait()
    except TimeoutError:
        return True
    return False
