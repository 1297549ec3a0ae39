"""Giving up a call: stop its remote tree, close its channel, and only then free its slot.

A call is given up when its caller is cancelled (an MCP cancel, a client that went
away, the chat's stop button: any cancel of the task awaiting `SSHPool.run`) or when
our backup timer outlives the command's own timeout. What runs then:

1. wait for an open that is still on its way: asyncssh leaves a channel whose open was
   cancelled open on the server, holding one of sshd's MaxSessions places for good, and
   may already have sent the exec request;
2. kill the command's process group (reap.py), with the group id its wrapper reported;
3. close the channel (a persistent shell is discarded) and free the slot.

`GiveUp.run` does this whatever happens to the caller, and the caller returns only once
it is done: however often it is cancelled meanwhile (asyncio cancels a task once, anyio's
cancel scopes on every await), so by the time a cancelled call has returned (and the
service has recorded it as cancelled) its tree is gone and its slot free. A front end only
has to cancel, and may wait for the call to end. Only a stop that outlasts
STOP_WAIT_SECONDS (every step of it is bounded, so only on a host that stopped answering)
carries on by itself after its caller has gone.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from contextlib import suppress
from typing import Any

import asyncssh

from .reap import PgidReader, Reaper

log = logging.getLogger(__name__)

# A command reports its process group as it starts; a cancel that comes first waits for the
# report (or the channel's close) this long before closing the channel without a kill. It comes
# within milliseconds unless the host is overloaded, which is when a stop matters most.
REPORT_WAIT_SECONDS = 5.0
# After the kill, how long the channel of the killed command may take to close.
CLOSE_WAIT_SECONDS = 2.0
# How long a caller waits for its stop at most: an open still on its way (up to the
# connect timeout), the report, the kill (reap.py, its own timeouts) and the close.
STOP_WAIT_SECONDS = 30.0


class GiveUp:
    """The stops still running for one pool (its `close` waits for them)."""

    def __init__(self) -> None:
        self._running: set[asyncio.Task[None]] = set()

    async def run(self, stop: Coroutine[Any, Any, None]) -> None:
        """Run `stop` to its end, then return; if the caller was cancelled meanwhile (once or
        many times), raise its CancelledError then."""
        task: asyncio.Task[None] = asyncio.create_task(stop)
        self._running.add(task)
        task.add_done_callback(self._running.discard)
        cancelled: asyncio.CancelledError | None = None
        deadline = asyncio.get_running_loop().time() + STOP_WAIT_SECONDS
        while not task.done():
            left = deadline - asyncio.get_running_loop().time()
            if left <= 0:
                log.warning("a given-up command is still being stopped after %.0f s; the stop "
                            "goes on without its caller", STOP_WAIT_SECONDS)
                break
            try:
                await asyncio.wait({task}, timeout=left)  # never cancels the stop itself
            except asyncio.CancelledError as exc:
                cancelled = exc
        if cancelled is not None:
            raise cancelled

    async def wait(self, seconds: float) -> None:
        if self._running:
            await asyncio.wait(list(self._running), timeout=seconds)


async def kill_group(reaper: Reaper, chan: asyncssh.SSHClientChannel[bytes],
                     reader: PgidReader) -> None:
    """Stop the command on `chan` (its process group, or its sudo), once it has reported it."""
    conn = chan.get_connection()
    if not isinstance(conn, asyncssh.SSHClientConnection):
        return
    # An open that was cancelled mid-way leaves the channel not yet reading: the command
    # may run, and its report waits in asyncssh's buffer.
    with suppress(Exception):
        chan.resume_reading()
    target = await reader.wait(REPORT_WAIT_SECONDS, unless=chan.wait_closed())
    if target is None:
        log.info("a command on %s was given up before it reported its process group; "
                 "closing its channel only", reaper.host)
        return
    await reaper.kill(conn, target)


async def stop_channel(reaper: Reaper, chan: asyncssh.SSHClientChannel[bytes],
                       reader: PgidReader, close: Callable[[], None] | None = None) -> None:
    """Kill the command's group, then close its channel (with `close`, if given) and wait
    until sshd has closed it too, which it does once the session's own process (the login
    shell, or the persistent shell) has exited (bounded: CLOSE_WAIT_SECONDS)."""
    await kill_group(reaper, chan, reader)
    (close or chan.close)()
    try:
        await asyncio.wait_for(chan.wait_closed(), CLOSE_WAIT_SECONDS)
    except TimeoutError:
        log.warning("a stopped command's channel on %s did not close within %.0f s; its slot "
                    "is freed anyway", reaper.host, CLOSE_WAIT_SECONDS)


async def after_open(opening: asyncio.Task[Any], stop: Callable[[Any], Coroutine[Any, Any, None]],
                     release: Callable[[], None]) -> None:
    """Let an open the caller gave up finish, stop what it opened, then free the slot."""
    try:
        try:
            opened = await opening
        except Exception:  # it failed by itself: nothing to stop
            return
        if opened is not None:
            await stop(opened)
    finally:
        release()
