"""What one whitelisted command produced on one host."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


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

    @property
    def ok(self) -> bool:
        return self.exit_status == 0 and not self.timed_out

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["duration_ms"] = round(self.duration_ms, 1)
        return data
