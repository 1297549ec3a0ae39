"""What one whitelisted command produced on one host."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .spool import CommandOutput


@dataclass(frozen=True)
class CommandResult:
    host: str
    command: str  # catalog name of the command
    rendered: str  # the validated, quoted command line (before the timeout wrapper)
    stdout: str
    stderr: str
    exit_status: int | None  # None when the process was killed or the channel closed early
    duration_ms: float
    truncated: bool
    timed_out: bool = False
    runs_as: str | None = None  # the user sudo ran it as (`become`), None: the login user
    # What the agent added to each stream (cut, timed out, ...), also at the end of the text.
    stdout_note: str = ""
    stderr_note: str = ""
    # Paging (agent/output/store.py): the whole output's size, and the handle to read the
    # part that stdout/stderr do not show; redactions made in what is shown, by kind.
    stdout_bytes: int | None = None
    output_handle: str | None = None
    redacted: dict[str, int] = field(default_factory=dict)
    # The call's id in the audit log, which names its recording (set by the service).
    audit_id: str | None = None
    # Output as data (agent/output/parsing.py), for a command with a parser: the parsed
    # stdout, or why there is none.
    data: Any = None
    parse_note: str = ""
    # A digest of the whole output as kept (both streams, redacted): equal outputs, equal
    # digests, however much of them stdout/stderr show ("" when unknown).
    digest: str = ""
    # The raw output as it arrived (the pool's spools), until the service has shown it.
    output: CommandOutput | None = field(default=None, repr=False, compare=False)

    @property
    def ok(self) -> bool:
        return self.exit_status == 0 and not self.timed_out

    def to_dict(self) -> dict[str, Any]:
        return {
            "host": self.host, "command": self.command, "rendered": self.rendered,
            "stdout": self.stdout, "stderr": self.stderr, "exit_status": self.exit_status,
            "duration_ms": round(self.duration_ms, 1), "truncated": self.truncated,
            "timed_out": self.timed_out, "runs_as": self.runs_as,
            "stdout_bytes": self.stdout_bytes, "output_handle": self.output_handle,
            "redacted": dict(self.redacted), "audit_id": self.audit_id, "data": self.data,
            "parse_note": self.parse_note,
        }
