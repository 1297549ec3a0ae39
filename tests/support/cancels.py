"""Cancelling fan-outs at volume (issue 19): run_on_hosts calls, each cancelled at a moment
of its own, and what each cancel left behind at the moment it returned.

A cancelled call must return only once its remote tree is gone, its slot free and its
end record written; so whatever is still there when a cancel has returned is a leftover.
"""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass, field
from pathlib import Path

import anyio

from agent.core.audit_records import read_records
from agent.core.identity import Identity
from agent.core.service import AgentService
from agent.mcp.cancel import settled

from .sshd import remote_processes, wait_until_gone

# Prints a line every 10 ms for about half a second, then sleeps long: a cancel can land
# before its first byte, while it prints, or while it sleeps. The sleep's duration (the
# marker) is this run's own, so the test counts its own processes only.
CHATTER = ("i=0; while [ $i -lt 40 ]; do echo line $i; i=$((i + 1)); sleep 0.01; done; "
           "sleep {marker}")
LATEST = 0.6  # s after the call: the command is well into its output by then


def marker() -> str:
    return f"19.{random.randint(100_000, 999_999)}"


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


def still_running(user: str, pattern: str) -> list[str]:
    """What `user` runs of `pattern` that nothing has stopped yet. A process that a stop
    has signalled (KILL; TERM for a command under sudo, which relays it) but that has not
    been scheduled to exit yet, on a loaded machine, is stopped already: it is left out,
    as are zombies (pgrep leaves those out itself)."""
    return [line for line in remote_processes(user, pattern) if not stopping(line)]


def stopping(process: str) -> bool:
    """Whether a process `pgrep -a` listed has been signalled to stop (or is exiting)."""
    pid = process.split()[0]
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return True  # gone meanwhile
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

    def summary(self, what: str) -> str:
        return (f"{what}: {self.cancels} cancels in {self.elapsed:.1f} s; at a cancel's return, "
                f"of {self.waves} waves: {len(self.left)} left processes "
                f"({sum(len(left) for _, left in self.left)} in all), {len(self.held)} held "
                f"slots, {len(self.unrecorded)} had calls without an end ({self.dying} "
                f"processes killed, not yet exited); {len(self.later)} processes left 2 s "
                "after the last")

    @property
    def clean(self) -> bool:
        return not (self.left or self.held or self.unrecorded or self.later)


async def cancel_storm(service: AgentService, command: str, identity: Identity, *,
                       audit: Path, user: str, pattern: str, cancels: int = 200,
                       at_once: int = 5, latest: float = LATEST) -> Storm:
    """Run `command` on all hosts `cancels` times, `at_once` fan-outs together, each cancelled
    at its own moment between 0 and `latest` s; in turn as a task is cancelled (once) and
    as the MCP SDK cancels the run_on_hosts tool's handler (an anyio cancel scope, which
    cancels it again on every await). After each wave, look for what `user` still runs of
    `pattern`, slots still held and calls still without an end record."""
    storm = Storm(cancels, cancels // at_once)
    moments = [latest * i / (cancels - 1) for i in range(cancels)]

    async def yes() -> None:
        return None

    async def cancelled_after(delay: float, sdk_style: bool) -> None:
        scope = anyio.CancelScope()

        async def fan_out() -> None:
            with scope:
                await settled(service.run_on_hosts(command, {}, ["all"], identity=identity,
                                                   confirm=yes))
            raise asyncio.CancelledError  # the scope took its own cancel: a cancel all the same

        task = asyncio.create_task(fan_out())
        await asyncio.sleep(delay)
        (scope.cancel if sdk_style else task.cancel)()
        try:
            await task
        except asyncio.CancelledError:
            return
        raise AssertionError("a cancelled fan-out returned a result")

    started = time.monotonic()
    for wave in range(storm.waves):
        # Each wave mixes early and late moments: wave w cancels at w, w+waves, w+2*waves...
        await asyncio.gather(*(cancelled_after(moments[wave + k * storm.waves], k % 2 == 1)
                               for k in range(at_once)))
        listed = remote_processes(user, pattern)
        if left := [process for process in listed if not stopping(process)]:
            storm.left.append((wave, left))
        storm.dying += len(listed) - len(left)
        if held := busy_slots(service):
            storm.held.append((wave, held))
        if missing := unended(audit):
            storm.unrecorded.append((wave, len(missing)))
    storm.elapsed = time.monotonic() - started
    storm.later = await asyncio.to_thread(wait_until_gone, user, pattern, 2.0)
    return storm
