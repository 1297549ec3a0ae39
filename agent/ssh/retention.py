"""Which SSH connections stay open: idle ones close after a while, and at most `cap` are
open at once.

A fan-out over 300 hosts used to leave 300 connections (and 300 sshd processes on the
hosts) open for the agent's whole life. Now:

- A connection nothing has used for `idle_seconds` (TAILNET_AGENT_SSH_IDLE) closes; the
  next call to that host reconnects. "Used" is a call starting or ending on it, so a
  command that runs for an hour keeps its connection, and the clock starts when it ends.
- At most `cap` connections (TAILNET_AGENT_SSH_MAX_CONNECTIONS) are open or being opened.
  A call that needs a new one at the cap closes the least recently used connection that
  nothing is using. A connection with a call in flight is never closed: not by the cap,
  not when idle (`HostState.in_use`: a call holds a channel slot, a given-up one being
  stopped included, or waits for the connection being opened).
- When every open connection has a call in flight, a call that needs a new one waits
  for one of them to finish, at most `wait_seconds` (TAILNET_AGENT_CONNECT_TIMEOUT: the
  time a caller already accepts for getting a connection), then is refused with
  ConnectionCapReached, nothing sent. Waiting, because the cap is reached that way by a
  burst (a fan-out wider than the cap, several callers at once) and a command ends in
  seconds; bounded, because a caller must not wait behind hour-long commands without
  being told why.

Hosts that left (the pool's `_retire`) stay counted until their last call has ended and
their connection is closed.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from contextlib import suppress

from .errors import ConnectionCapReached
from .pooled_host import HostState

log = logging.getLogger(__name__)

# The idle sweep never runs more often than this (a burst of expiries is closed together).
MIN_SWEEP_SECONDS = 0.05


class Retention:
    def __init__(self, *, idle_seconds: float, cap: int, wait_seconds: float,
                 close: Callable[[HostState], None]) -> None:
        if cap < 1:
            raise ValueError("the connection cap must be at least 1")
        self.idle_seconds = idle_seconds
        self.cap = cap
        self.wait_seconds = wait_seconds
        self._close = close  # drops the state's connection (and its idle shells)
        # Hosts holding a connection or an attempt, least recently used first.
        self._open: OrderedDict[HostState, None] = OrderedDict()
        self._waiters: list[asyncio.Future[None]] = []
        self._sweeper: asyncio.Task[None] | None = None
        self.closed_idle = 0  # connections closed after idle_seconds unused (since start)
        self.closed_for_cap = 0  # closed to make room for another at the cap
        self.refused = 0  # calls refused after waiting for room

    @property
    def open(self) -> int:
        """Connections open or being opened, hosts that left included (one the host closed
        on its own is no longer counted, though its entry waits for the next sweep)."""
        return sum(1 for s in self._open if s.in_use() or s.live() is not None)

    def used(self, state: HostState) -> None:
        """A call starts on `state`'s connection (or it has just been opened)."""
        state.last_used = time.monotonic()
        self._open[state] = None
        self._open.move_to_end(state)

    def released(self, state: HostState) -> None:
        """The last call on `state`'s connection ended: its idle time starts now, and a
        call waiting for room may take it."""
        if state in self._open:
            self.used(state)
        self._wake()

    def opening(self, state: HostState) -> None:
        """A connection attempt for `state` starts (room() said there is room)."""
        self.used(state)
        if self._sweeper is None or self._sweeper.done():
            self._sweeper = asyncio.create_task(self._sweep(), name="ssh-idle-close")

    def closed(self, state: HostState) -> None:
        """`state` holds no connection any more (closed, failed to open, dropped)."""
        if state in self._open:
            del self._open[state]
            self._wake()

    async def room(self, state: HostState) -> None:
        """Return once one more connection (for `state`) fits under the cap: closing the
        least recently used idle one if needed, else waiting (bounded) for a call to end.
        Raises ConnectionCapReached when none ended in time."""
        deadline = time.monotonic() + self.wait_seconds
        while True:
            if len(self._open) < self.cap or state in self._open:
                return
            self._forget_dead()  # only at the cap: a scan of every connection
            if len(self._open) < self.cap:
                return
            victim = next((s for s in self._open if not s.in_use()), None)
            if victim is not None:
                log.debug("closing the connection to %s, the least recently used, to open "
                          "one to %s (%d open, the cap)", victim.config.name,
                          state.config.name, self.cap)
                self.closed_for_cap += 1
                self._close(victim)
                self.closed(victim)
                continue
            left = deadline - time.monotonic()
            if left <= 0 or not await self._wait(left):
                self.refused += 1
                raise ConnectionCapReached(
                    state.config.name,
                    f"nothing was sent to {state.config.name}: the agent has {self.cap} SSH "
                    f"connections open (TAILNET_AGENT_SSH_MAX_CONNECTIONS) and each had a call "
                    f"running for the last {self.wait_seconds:g} s. Try again when those "
                    "calls have ended, or raise the cap")

    async def until_unused(self, state: HostState) -> None:
        """Return once nothing uses `state` (its calls ended, nobody waits for it)."""
        while state.in_use():
            await self._wait(None)

    def status(self) -> dict[str, float | int]:
        return {"open": self.open, "cap": self.cap, "idle_close_seconds": self.idle_seconds,
                "closed_idle": self.closed_idle, "closed_for_cap": self.closed_for_cap,
                "refused_at_cap": self.refused}

    async def stop(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            with suppress(asyncio.CancelledError):
                await self._sweeper
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_result(None)

    # -- inside -----------------------------------------------------------------------

    def _forget_dead(self) -> None:
        """Drop entries whose connection died on its own (closed by the host, lost)."""
        dead = [s for s in self._open if not s.in_use() and s.live() is None]
        for state in dead:
            self._close(state)  # its idle shells, if any
            self.closed(state)

    async def _wait(self, seconds: float | None) -> bool:
        """Wait until some connection may have become free; False when `seconds` passed."""
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await asyncio.wait_for(waiter, seconds)
            return True
        except TimeoutError:
            return False
        finally:
            with suppress(ValueError):
                self._waiters.remove(waiter)

    def _wake(self) -> None:
        # Every waiter re-checks (they loop); they are few: callers beyond the cap, hosts
        # that left with calls still running.
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_result(None)

    async def _sweep(self) -> None:
        """Close connections unused for idle_seconds; sleeps until the next may expire and
        ends when none is open (opening() starts it again)."""
        while self._open:
            now = time.monotonic()
            next_check = now + self.idle_seconds
            expired: list[HostState] = []
            for state in self._open:  # least recently used first
                if state.in_use():
                    continue
                expires = state.last_used + self.idle_seconds
                if expires > now:
                    next_check = expires  # everything after it was used later
                    break
                expired.append(state)
            for state in expired:
                alive = state.live() is not None
                self._close(state)
                self.closed(state)
                self.closed_idle += alive
            if expired:
                log.info("closed %d SSH connection(s) unused for %g s "
                         "(TAILNET_AGENT_SSH_IDLE); the next call reconnects",
                         len(expired), self.idle_seconds)
            await asyncio.sleep(max(next_check - time.monotonic(), MIN_SWEEP_SECONDS))


