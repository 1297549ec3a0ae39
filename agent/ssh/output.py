"""What a command sent back, whichever way it ran, turned into a `CommandResult`.

Exec channels (agent.ssh.exec.CappedSession) and persistent-shell calls
(agent.ssh.shell.ShellCall) collect output differently but expose the same shape,
`Collected`; `to_result` reads only that shape, so both paths report alike.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

import asyncssh

from agent.core.results import CommandResult

STDERR_CAP = 64 * 1024
STDOUT: int | None = None
STDERR: int | None = asyncssh.EXTENDED_DATA_STDERR


class Collected(Protocol):
    """Output of one command as it arrived: capped streams, exit status, how it ended."""

    @property
    def overflow(self) -> Mapping[int | None, bool]: ...

    @property
    def exit_status(self) -> int | None: ...

    @property
    def exit_signal(self) -> str | None: ...

    @property
    def lost(self) -> Exception | None: ...

    def text(self, stderr: bool) -> str: ...


def stderr_cap(max_output: int) -> int:
    return min(max_output, STDERR_CAP)


def to_result(
    collected: Collected,
    *,
    host: str,
    command_name: str,
    rendered: str,
    max_output: int,
    timeout: float,
    elapsed: float,
    client_killed: bool,
) -> CommandResult:
    stdout, stderr = collected.text(stderr=False), collected.text(stderr=True)
    truncated = False
    if collected.overflow[STDOUT]:
        truncated = True
        stdout += f"\n[output truncated at {max_output} bytes]\n"
    if collected.overflow[STDERR]:
        truncated = True
        stderr += f"\n[output truncated at {stderr_cap(max_output)} bytes]\n"
    status = collected.exit_status
    # `timeout` exits 124 after TERM and 137 when it had to KILL; a command that
    # returns 124 by itself early is not a timeout, hence the elapsed-time check.
    timed_out = client_killed or (status in (124, 137) and elapsed >= timeout - 0.5)
    if timed_out:
        stderr += f"\n[killed: command timed out after {timeout:g} s]\n"
    elif collected.exit_signal and not truncated:
        stderr += f"\n[terminated by signal {collected.exit_signal}]\n"
    elif status is None and collected.lost is not None and not truncated:
        stderr += (
            f"\n[connection to {host} lost before the command finished: "
            f"{collected.lost}; it may have partly run]\n"
        )
    return CommandResult(
        host=host,
        command=command_name,
        rendered=rendered,
        stdout=stdout,
        stderr=stderr,
        exit_status=None if client_killed else status,
        duration_ms=elapsed * 1000,
        truncated=truncated,
        timed_out=timed_out,
    )
