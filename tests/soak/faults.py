"""What the soak does to the system under load, and how it sorts what came back."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
from dataclasses import dataclass, field
from typing import Any

from tests.bench.bench_servers import descendants
from tests.support.sshd import Sshd

# A tool error our code wrote says what happened in one line; the SDK's own answer to a
# crash is this bare sentence, with nothing after it.
BARE_SDK_ERROR = "Error executing tool {tool}"
# Notes the agent adds to a result whose command did not finish normally.
RESULT_NOTES = ("[connection to ", "[killed: command timed out", "[terminated by signal",
                "may or may not have run")


@dataclass
class Tally:
    ok: int = 0
    clear: int = 0
    other: int = 0
    cancelled: int = 0
    clear_kinds: dict[str, int] = field(default_factory=dict)
    others: list[str] = field(default_factory=list)

    @property
    def issued(self) -> int:
        return self.ok + self.clear + self.other + self.cancelled

    def add_clear(self, why: str) -> None:
        self.clear += 1
        key = why.split(":")[0][:70]
        self.clear_kinds[key] = self.clear_kinds.get(key, 0) + 1

    def add_other(self, why: str) -> None:
        self.other += 1
        if len(self.others) < 10:
            self.others.append(why[:300])


def classify(tally: Tally, tool: str, result: Any, expect: str) -> None:
    """Sort one call's answer: ok, failed with a clear error, or failed otherwise."""
    text = " ".join(getattr(c, "text", "") for c in getattr(result, "content", []) or [])
    if result.is_error:
        bare = text.strip() == BARE_SDK_ERROR.format(tool=tool)
        if bare or "Traceback" in text or not text.strip():
            tally.add_other(f"{tool}: {text}")
        else:
            tally.add_clear(text.removeprefix(f"Error executing tool {tool}: "))
        return
    data = result.structured_content or {}
    stdout, stderr = str(data.get("stdout", "")), str(data.get("stderr", ""))
    if data.get("exit_status") == 0 and expect in stdout:
        tally.ok += 1
    elif any(note in stderr for note in RESULT_NOTES):
        tally.add_clear(stderr.strip().splitlines()[-1])
    else:
        tally.add_other(f"{tool}: exit {data.get('exit_status')}, stdout {stdout[:80]!r}, "
                        f"stderr {stderr[:160]!r}")


@dataclass
class Faults:
    """Faults planned by call count: sshd restarts, and kills of the agent's tailscaled."""

    sshd: Sshd
    agent_pid: int
    restart_at: list[int]
    kill_at: list[int]
    done: list[str] = field(default_factory=list)

    async def maybe(self, issued: int) -> None:
        while self.restart_at and issued >= self.restart_at[0]:
            self.restart_at.pop(0)
            started = time.monotonic()
            await asyncio.to_thread(self.sshd.restart)
            self.done.append(f"sshd restarted at call {issued} "
                             f"({time.monotonic() - started:.1f} s)")
        while self.kill_at and issued >= self.kill_at[0]:
            self.kill_at.pop(0)
            killed = tailscaled_of(self.agent_pid)
            for pid in killed:
                os.kill(pid, signal.SIGKILL)
            self.done.append(f"tailscaled (pid {', '.join(map(str, killed))}) killed at call "
                             f"{issued}")


def tailscaled_of(pid: int) -> list[int]:
    found = []
    for child in descendants(pid):
        try:
            with open(f"/proc/{child}/comm") as f:
                if f.read().strip().startswith("tailscaled"):
                    found.append(child)
        except OSError:
            continue
    return found


def remote_left(user: str, pattern: str) -> list[str]:
    """Processes of the sshd user still running a soak command (not zombies)."""
    done = subprocess.run(["pgrep", "-a", "-u", user, "-f", pattern], capture_output=True,
                          text=True, check=False)
    return done.stdout.splitlines()
