"""Cancelling fan-outs at volume (issue 19): run_on_hosts calls, each cancelled at a moment
of its own, and what each cancel left behind at the moment it returned.

A cancelled call must return only once its remote tree is gone, its slot free and its
end record written; so whatever is still there when a cancel has returned is a leftover.
Processes are counted on the test's own sshd only (`Sshd.processes`: its sessions'
environment says which sshd started them), so other test runs on the machine, as the same
user and with the same commands, neither disturb the count nor are counted.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from unittest import mock

import anyio
import asyncssh

from agent.access.identity import Identity
from agent.audit.reader import read_records
from agent.core.service import AgentService
from agent.fanout.strategy import StrategyRequest
from agent.mcp.cancel import settled
from agent.ssh import giveup
from agent.ssh import pool as pool_module
from agent.ssh.reap import PgidReader, Reaper

from .sshd import Sshd

# Prints a line every 10 ms for about half a second, then sleeps long: a cancel can land
# before its first byte, while it prints, or while it sleeps. The sleep's duration (the
# marker) tells this test's command from the others' on the same sshd.
CHATTER = ("i=0; while [ $i -lt 40 ]; do echo line $i; i=$((i + 1)); sleep 0.01; done; "
           "sleep {marker}")
LATEST = 0.6  # s after the call: the command is well into its output by then
# Every host at once (a destructive command would run a canary host first by default).
PARALLEL = StrategyRequest("parallel")


def marker() -> str:
    """A sleep's duration for one test's command, told apart from other tests' on the same
    sshd (never 19.41x..., which older copies of these tests look for unscoped)."""
    return f"{random.randint(20, 29)}.{random.randint(100_000, 999_999)}"


def chatter_catalog(name: str, marker: str, *, destructive: bool, become: bool = False) -> str:
    """A catalog with one CHATTER command (exec path when destructive, else the fast path)."""
    return f"""
commands:
  {name}:
    description: Print for half a second, then sleep long (test command).
    category: Test
    template: "{CHATTER.format(marker=marker)}"
    timeout: 30
    destructive: {str(destructive).lower()}
    become: {str(become).lower()}
"""


_EXITING = 0x4  # PF_EXITING in /proc/PID/stat's flags
_STOP_SIGNALS = (1 << (9 - 1)) | (1 << (15 - 1))  # KILL and TERM in a pending-signal mask


def still_running(sshd: Sshd, pattern: str, *, user: str | None = None) -> list[str]:
    """What `sshd`'s sessions run of `pattern` (as `user`, default its login user) that
    nothing has stopped yet. A process that a stop has signalled (KILL; TERM for a command
    under sudo, which relays it) but that has not been scheduled to exit yet, on a loaded
    machine, is stopped already: it is left out, as are zombies (pgrep leaves those out
    itself)."""
    return [line for line in sshd.processes(pattern, user=user) if not stopping(line)]


def stopping(process: str) -> bool:
    """Whether a process `pgrep -a` listed has been signalled to stop (or is exiting)."""
    return stopped(int(process.split()[0]))


def stopped(pid: int) -> bool:
    """Whether `pid` is gone, exiting, a zombie, or has a KILL or TERM pending."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return True  # gone
    fields = stat.rsplit(")", 1)[1].split()
    state, flags = fields[0], int(fields[6])
    pending = 0
    for line in status.splitlines():
        if line.startswith(("SigPnd:", "ShdPnd:")):
            pending |= int(line.split()[1], 16)
    return state in "ZX" or bool(flags & _EXITING) or bool(pending & _STOP_SIGNALS)


def busy_slots(service: AgentService) -> dict[str, int]:
    """The SSH channel slots held, by host (none once every call has ended)."""
    return {name: state.slots.busy for name, state in service.pool._hosts.items()
            if state.slots.busy}


def unended(audit: Path) -> list[str]:
    """Calls with a start record and no end record yet."""
    records = list(read_records(audit)) if audit.exists() else []
    ended = {r["call"] for r in records if r["event"] == "end"}
    return [r["call"] for r in records if r["event"] == "start" and r["call"] not in ended]


@dataclass
class Storm:
    """What a storm of cancels left, wave by wave, at the moment its cancels returned."""

    cancels: int
    waves: int
    elapsed: float = 0.0
    left: list[tuple[int, list[str]]] = field(default_factory=list)  # processes
    held: list[tuple[int, dict[str, int]]] = field(default_factory=list)  # slots
    unrecorded: list[tuple[int, int]] = field(default_factory=list)  # calls without end
    later: list[str] = field(default_factory=list)  # processes 2 s after the last cancel
    dying: int = 0  # processes killed but not yet exited when their cancel returned
    seen: int = 0  # the most processes of the command seen running at once, mid-wave
    stops: int = 0  # stops of a command that had reported what to signal
    freed_early: list[str] = field(default_factory=list)  # a slot freed, its tree running

    def summary(self, what: str) -> str:
        return (f"{what}: {self.cancels} cancels in {self.elapsed:.1f} s; at a cancel's return, "
                f"of {self.waves} waves: {len(self.left)} left processes "
                f"({sum(len(left) for _, left in self.left)} in all), {len(self.held)} held "
                f"slots, {len(self.unrecorded)} had calls without an end ({self.dying} "
                f"processes killed, not yet exited); {len(self.freed_early)} of {self.stops} "
                f"stops freed their slot with the tree running; {len(self.later)} processes "
                f"left 2 s after the last; up to {self.seen} seen running mid-wave")

    @property
    def clean(self) -> bool:
        return not (self.left or self.held or self.unrecorded or self.later
                    or self.freed_early)


@contextlib.contextmanager
def watching_stops(storm: Storm, marker: str) -> Iterator[None]:
    """Check every stop of a given-up call at the moment it frees its slot (the pool frees
    it as soon as `stop_channel` returns, on the exec and the fast path): what the command
    reported it could be stopped by (its process group's leader, or its sudo) must be
    stopped by then. Observed only: the pool's own stop runs unchanged."""
    real = giveup.stop_channel

    async def stop_channel(reaper: Reaper, chan: asyncssh.SSHClientChannel[bytes],
                           reader: PgidReader, *rest: Any, **named: Any) -> None:
        await real(reaper, chan, reader, *rest, **named)
        if reader.target is not None:
            storm.stops += 1
            pid = reader.target.number
            if not stopped(pid) and marker.encode() in _command_line(pid):
                storm.freed_early.append(f"{reaper.host}: {reader.target}")

    with mock.patch.object(pool_module, "stop_channel", stop_channel):
        yield


def _command_line(pid: int) -> bytes:
    """`pid`'s command line ("" once gone: a reused pid shows another command line)."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
    except OSError:
        return b""


async def cancel_storm(service: AgentService, command: str, identity: Identity, *,
                       audit: Path, sshd: Sshd, marker: str, user: str | None = None,
                       cancels: int = 200, at_once: int = 5, latest: float = LATEST) -> Storm:
    """Run `command` (a CHATTER with `marker`) on all hosts at once (strategy parallel)
    `cancels` times, `at_once` fan-outs together, each cancelled at its own moment between
    0 and `latest` s; in turn as a task is cancelled (once) and as the MCP SDK cancels the
    run_on_hosts tool's handler (an anyio cancel scope, which cancels it again on every
    await). Each stop is checked as it frees its slot (`watching_stops`); after each wave,
    what `sshd`'s sessions still run of it (as `user`), slots still held and calls still
    without an end record."""
    storm = Storm(cancels, cancels // at_once)
    moments = [latest * i / (cancels - 1) for i in range(cancels)]
    pattern = f"sleep {marker}"

    async def yes() -> None:
        return None

    async def cancelled_after(delay: float, sdk_style: bool) -> None:
        scope = anyio.CancelScope()

        async def fan_out() -> None:
            with scope:
                await settled(service.run_on_hosts(command, {}, ["all"], identity=identity,
                                                   confirm=yes, strategy=PARALLEL))
            raise asyncio.CancelledError  # the scope took its own cancel: a cancel all the same

        task = asyncio.create_task(fan_out())
        await asyncio.sleep(delay)
        (scope.cancel if sdk_style else task.cancel)()
        try:
            await task
        except asyncio.CancelledError:
            return
        raise AssertionError("a cancelled fan-out returned a result")

    async def count_midway() -> None:
        """That the count sees this storm's commands at all (else it proves nothing)."""
        await asyncio.sleep(latest / 2)
        running = await asyncio.to_thread(sshd.processes, pattern, user=user)
        storm.seen = max(storm.seen, len(running))

    started = time.monotonic()
    with watching_stops(storm, marker):
        for wave in range(storm.waves):
            # Each wave mixes early and late moments: wave w cancels at w, w+waves, ...
            await asyncio.gather(count_midway(), *(
                cancelled_after(moments[wave + k * storm.waves], k % 2 == 1)
                for k in range(at_once)))
            listed = sshd.processes(pattern, user=user)
            if left := [process for process in listed if not stopping(process)]:
                storm.left.append((wave, left))
            storm.dying += len(listed) - len(left)
            if held := busy_slots(service):
                storm.held.append((wave, held))
            if missing := unended(audit):
                storm.unrecorded.append((wave, len(missing)))
    storm.elapsed = time.monotonic() - started
    storm.later = await asyncio.to_thread(sshd.wait_until_gone, pattern, 2.0, user=user)
    return storm
