"""What a command sent back, whichever way it ran, turned into a `CommandResult`.

Exec channels (agent.ssh.exec.CappedSession) and persistent-shell calls
(agent.ssh.shell.ShellCall) collect output differently but expose the same shape,
`Collected`; `to_result` reads only that shape, so both paths report alike.
"""

from __future__ import annotations

from typing import Protocol

import asyncssh

from agent.output.results import CommandResult
from agent.output.spool import CommandOutput, Spool, stderr_cap

INLINE_TEXT = 1 << 20  # bytes of each stream decoded into CommandResult.stdout / .stderr
STDOUT: int | None = None
STDERR: int | None = asyncssh.EXTENDED_DATA_STDERR


class Collected(Protocol):
    """Output of one command as it arrived (a CommandOutput), exit status, how it ended."""

    @property
    def output(self) -> CommandOutput: ...

    @property
    def exit_status(self) -> int | None: ...

    @property
    def exit_signal(self) -> str | None: ...

    @property
    def lost(self) -> Exception | None: ...

    def flush(self) -> None: ...


def _cut_note(spool: Spool, cap: int) -> str:
    if spool.cut == "disk":
        return (f"\n[output cut at {spool.size} bytes: the disk budget for all outputs, running "
                "and kept (TAILNET_AGENT_OUTPUT_DISK), is used up; run it again when other "
                "commands have finished, or ask the operator to raise it]\n")
    if spool.cut == "cap":
        return f"\n[output truncated at {cap} bytes]\n"
    return ""


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
    collected.flush()
    output = collected.output
    output.finish()
    truncated = output.stdout.overflow or output.stderr.overflow
    stdout_note = _cut_note(output.stdout, max_output)
    stderr_note = _cut_note(output.stderr, stderr_cap(max_output))
    status = collected.exit_status
    # `timeout` exits 124 after TERM and 137 when it had to KILL; a command that
    # returns 124 by itself early is not a timeout, hence the elapsed-time check.
    timed_out = client_killed or (status in (124, 137) and elapsed >= timeout - 0.5)
    if timed_out:
        stderr_note += f"\n[killed: command timed out after {timeout:g} s; the output so far is " \
                       "kept]\n"
    elif collected.exit_signal and not truncated:
        stderr_note += f"\n[terminated by signal {collected.exit_signal}]\n"
    elif status is None and collected.lost is not None and not truncated:
        stderr_note += (
            f"\n[connection to {host} lost before the command finished: "
            f"{collected.lost}; it may have partly run]\n"
        )
    return CommandResult(
        host=host,
        command=command_name,
        rendered=rendered,
        # Decoded text for callers of the pool; the service shows a head and a tail of
        # the spools instead and pages the rest (agent/output/store.py).
        stdout=output.stdout.text(INLINE_TEXT) + stdout_note,
        stderr=output.stderr.text(INLINE_TEXT) + stderr_note,
        exit_status=None if client_killed else status,
        duration_ms=elapsed * 1000,
        truncated=truncated,
        timed_out=timed_out,
        stdout_note=stdout_note,
        stderr_note=stderr_note,
        output=output,
    )
