"""How one host of a fan-out ended, and how that reads on the wire."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

Status = Literal["ok", "failed", "offline", "refused", "skipped"]
STATUSES: tuple[Status, ...] = ("ok", "failed", "offline", "refused", "skipped")
# What needs a look comes first: a host that failed, then one that was refused, ...
SEVERITY: dict[str, int] = {"failed": 0, "refused": 1, "offline": 2, "skipped": 3, "ok": 4}


@dataclass(frozen=True)
class HostOutcome:
    host: str
    status: Status
    exit_status: int | None = None
    stdout: str = ""
    stderr: str = ""
    duration_ms: float = 0.0
    truncated: bool = False
    timed_out: bool = False
    error: str = ""  # why it was refused, offline, skipped or failed without output
    output_handle: str | None = None  # read_output pages what stdout/stderr do not show
    batch: int | None = None  # the batch it ran in (None: answered before any batch)
    # A digest of the whole output (agent.core.spool): hosts with equal digests printed the
    # same, whatever part of it stdout/stderr show. "" when nothing ran.
    digest: str = ""

    def to_dict(self) -> dict[str, Any]:
        """The host as a result shows it: fields at their default (no output, no error,
        not cut) are left out, so a thousand hosts cost what they say."""
        data: dict[str, Any] = {"host": self.host, "status": self.status}
        if self.exit_status is not None:
            data["exit_status"] = self.exit_status
        for name in ("stdout", "stderr", "truncated", "timed_out", "error", "output_handle",
                     "batch"):
            value = getattr(self, name)
            if value:
                data[name] = value
        if self.duration_ms:
            data["duration_ms"] = round(self.duration_ms, 1)
        return data
