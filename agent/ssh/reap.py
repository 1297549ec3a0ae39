"""Stopping the remote process tree of a call we gave up on (cancelled, disconnected,
or past its timeout on our side).

Closing an SSH channel does not stop what it runs: sshd only closes the pipes, a
command that writes nothing (`sleep`, a stuck `du`) keeps running, and sshd keeps
the session (and its MaxSessions place) until it ends. Nor do SSH `signal` requests
help: OpenSSH's sshd (9.2 here) sends them to the session's process group, and
`timeout` runs every command in a group of its own.

So every wrapped command first reports that group's id on stderr
(`whitelist.render.wrap_for_exec`, `wrap_for_shell`), or for a command run through sudo the
pid of sudo (the login user cannot signal the target user's group; sudo relays TERM to it, see
`whitelist.render.StopTarget`); `PgidReader` takes the report off the stream, and
`Reaper` stops the command with the one line `whitelist.render.kill_process_groups`
makes, on the same connection the command runs on (a dropped connection is not
retried elsewhere: after a reboot the number could belong to someone else). Kills
for one connection are batched into one exec channel, which is the only channel
opened outside `ChannelSlots`: at most one per connection at a time, and the limit
stays below sshd's MaxSessions with room for it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any

import asyncssh

from whitelist.render import (
    PGID_REPORT,
    SUDO_REPORT,
    SUDO_STOP_ROUND_SECONDS,
    SUDO_STOP_ROUNDS,
    StopTarget,
    kill_process_groups,
    parse_pgid_report,
)

log = logging.getLogger(__name__)

_PREFIXES = (PGID_REPORT.encode(), SUDO_REPORT.encode())
_MAX_REPORT = max(map(len, _PREFIXES)) + 8  # a prefix, up to 7 digits, the newline
# How long the stop line may run: a sudo's rounds (see whitelist.render._sudo_stop), and more.
KILL_TIMEOUT_SECONDS = SUDO_STOP_ROUNDS * SUDO_STOP_ROUND_SECONDS + 5.0
# sshd frees a session a moment after its process exits, so right after a burst of
# cancels it may refuse one more channel; retried with backoff (about 1.3 s in all).
OPEN_RETRIES = 7


class PgidReader:
    """Takes the wrapper's process-group report off the front of a stderr stream."""

    def __init__(self) -> None:
        self.target: StopTarget | None = None  # what to signal to stop the command
        self.seen = asyncio.Event()  # the first line has arrived (a report or not)
        self._held = b""

    def feed(self, data: bytes) -> bytes:
        """What of `data` is the command's own stderr."""
        if self.seen.is_set():
            return data
        held = self._held + data
        newline = held.find(b"\n")
        if newline < 0:
            if len(held) < _MAX_REPORT and any(held[: len(p)] == p[: len(held)] for p in _PREFIXES):
                self._held = held  # could still become a report
                return b""
            self._finish(None)
            return held
        target = parse_pgid_report(held[:newline])
        self._finish(target)
        return held[newline + 1:] if target is not None else held

    def flush(self) -> bytes:
        """The stream ended: bytes held back were the command's after all."""
        held, self._held = self._held, b""
        self._finish(None)
        return held

    def _finish(self, target: StopTarget | None) -> None:
        if not self.seen.is_set():
            self.target = target
            self._held = b""
            self.seen.set()

    async def wait(self, seconds: float,
                   unless: Coroutine[Any, Any, None] | None = None) -> StopTarget | None:
        """What to signal, waiting up to `seconds` for the report to arrive (no longer once
        `unless` has finished: the channel closed, so no report can come)."""
        if self.seen.is_set():
            if unless is not None:
                unless.close()
            return self.target
        waits: set[asyncio.Future[Any]] = {asyncio.ensure_future(self.seen.wait())}
        if unless is not None:
            waits.add(asyncio.ensure_future(unless))
        try:
            await asyncio.wait(waits, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiting in waits:
                waiting.cancel()
        return self.target


class Reaper:
    """Kills process groups on a host, batching what arrives while a kill is running."""

    def __init__(self, host: str) -> None:
        self.host = host
        self.killed = 0  # groups killed since start (tests and the soak read it)
        self._pending: dict[asyncssh.SSHClientConnection,
                            dict[StopTarget, asyncio.Future[bool]]] = {}
        self._runner: asyncio.Task[None] | None = None

    async def kill(self, conn: asyncssh.SSHClientConnection, target: StopTarget) -> bool:
        """Stop what `target` names through `conn`; True once the kill line ran."""
        if conn.is_closed():
            log.warning("cannot stop %s on %s: the connection is gone; it ends "
                        "at its own timeout", target, self.host)
            return False
        waiting = self._pending.setdefault(conn, {})
        future = waiting.get(target)
        if future is None:
            future = waiting[target] = asyncio.get_running_loop().create_future()
        if self._runner is None or self._runner.done():
            self._runner = asyncio.create_task(self._run(), name=f"reaper-{self.host}")
        return await asyncio.shield(future)

    async def _run(self) -> None:
        while self._pending:
            batch, self._pending = self._pending, {}
            for conn, futures in batch.items():
                ok = False
                try:
                    ok = await self._kill_now(conn, sorted(futures))
                except Exception as exc:  # a stop waits for this answer: it must always come
                    log.error("could not stop %s on %s: %s; they end at their own timeout",
                              ", ".join(map(str, futures)), self.host, exc)
                finally:
                    for future in futures.values():
                        if not future.done():
                            future.set_result(ok)

    async def _kill_now(self, conn: asyncssh.SSHClientConnection,
                        targets: list[StopTarget]) -> bool:
        line = kill_process_groups(targets)
        for attempt in range(OPEN_RETRIES + 1):
            try:
                done = await asyncio.wait_for(
                    conn.run(line, check=False, stdin=asyncssh.DEVNULL), KILL_TIMEOUT_SECONDS)
                break
            except asyncssh.ChannelOpenError as exc:
                if attempt < OPEN_RETRIES and not conn.is_closed():
                    await asyncio.sleep(0.01 * 2**attempt)
                    continue
                error: Exception = exc
            except (OSError, TimeoutError, asyncssh.Error) as exc:
                error = exc
            log.warning("could not stop %s on %s: %s; they end at their own timeout",
                        ", ".join(map(str, targets)), self.host, error)
            return False
        self.killed += len(targets)
        if done.exit_status == 1:  # see whitelist.render._sudo_stop
            log.warning("a sudo among %s on %s had not started its command after %.0f s, so it "
                        "was not signalled; the command ends at its own timeout",
                        ", ".join(map(str, targets)), self.host,
                        SUDO_STOP_ROUNDS * SUDO_STOP_ROUND_SECONDS)
            return False
        if done.exit_status != 0:
            log.warning("the stop line for %s on %s failed (exit status %s); they end at "
                        "their own timeout", ", ".join(map(str, targets)), self.host,
                        done.exit_status)
            return False
        log.info("stopped %s on %s", ", ".join(map(str, targets)), self.host)
        return True
