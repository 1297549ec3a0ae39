"""Counting the channels open on one SSH connection against sshd's MaxSessions."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from contextlib import suppress

from .shell import Shell


class ChannelSlots:
    """Channels open on one connection (exec channels, busy and idle shells) within `limit`.

    Releasing is synchronous so that `finally` blocks of cancelled callers always
    give their slot back; between awaits the counters cannot change under us.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.busy = 0
        self.on_idle: Callable[[], None] | None = None  # told when busy drops to 0
        self.idle: list[Shell] = []
        self._waiters: list[asyncio.Future[None]] = []

    async def acquire(self) -> None:
        """A slot for a new channel; closes an idle shell when that is the only way to get one."""
        while True:
            if self.busy + len(self.idle) < self.limit:
                self.busy += 1
                return
            if self.idle:
                self.idle.pop(0).kill()  # the oldest idle shell
                self.busy += 1
                return
            await self._wait()

    async def take_shell(self, usable: Callable[[Shell], bool]) -> Shell | None:
        """An idle usable shell, or None with a fresh slot held for opening one."""
        while True:
            while self.idle:
                shell = self.idle.pop()  # most recently used first: a small hot set
                if usable(shell):
                    self.busy += 1
                    return shell
                shell.kill()
            if self.busy < self.limit:
                self.busy += 1
                return None
            await self._wait()

    def release(self) -> None:
        self.busy -= 1
        self._wake()

    def give_back(self, shell: Shell) -> None:
        shell.finish()
        self.busy -= 1
        self.idle.append(shell)
        # Reuse is most-recent-first, so shells left over from a burst sink to the
        # front; close those nobody needed for a while.
        while len(self.idle) > 1 and not self.idle[0].usable(self.idle[0].conn):
            self.idle.pop(0).kill()
        self._wake()

    def discard(self, shell: Shell) -> None:
        shell.kill()
        self.release()

    def close_idle(self) -> None:
        while self.idle:
            self.idle.pop().kill()

    async def _wait(self) -> None:
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self._wake()  # we were handed a slot we will not use: pass it on
            raise
        finally:
            with suppress(ValueError):
                self._waiters.remove(waiter)

    def _wake(self) -> None:
        if self.busy == 0 and self.on_idle is not None:
            self.on_idle()
        # One freed or idle slot, one waiter (first come, first served): waking all
        # of 32 queued callers for every release cost more than the calls themselves.
        while self._waiters:
            waiter = self._waiters.pop(0)
            if not waiter.done():
                waiter.set_result(None)
                return
