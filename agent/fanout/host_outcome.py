"""How one host of a fan-out ended, and how that reads on the wire."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal

from .row_filter import FilterTally, RowFilter, Unevaluable

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
    # A digest of the whole output (agent.output.spool): hosts with equal digests printed the
    # same, whatever part of it stdout/stderr show. "" when nothing ran, or when the rows
    # a filter matched stand for the output (`filtered`).
    digest: str = ""
    audit_id: str | None = None  # the host's call in the audit log (its recording)
    data: Any = None  # its output as data (a command with a parser); with a filter, the
    #                   rows that matched
    note: str = ""  # why a command with a parser has no data, or the filter no verdict
    matched: bool | None = None  # the filter's verdict (None: no filter, or undetermined)

    def to_dict(self) -> dict[str, Any]:
        """The host as a result shows it: fields at their default (no output, no error,
        not cut) are left out, so a thousand hosts cost what they say."""
        data: dict[str, Any] = {"host": self.host, "status": self.status}
        if self.exit_status is not None:
            data["exit_status"] = self.exit_status
        for name in ("stdout", "stderr", "truncated", "timed_out", "error", "output_handle",
                     "batch", "audit_id", "note"):
            value = getattr(self, name)
            if value:
                data[name] = value
        if self.data is not None:
            data["data"] = self.data
        if self.matched is not None:
            data["matched"] = self.matched
        if self.duration_ms:
            data["duration_ms"] = round(self.duration_ms, 1)
        return data

    def filtered(self, row_filter: RowFilter, tally: FilterTally) -> HostOutcome:
        """This host through the filter: matched (showing the rows that matched, not its
        text: they stand for its output, so its digest goes), not matched, or
        undetermined (no data, or rows the filter could not evaluate: the note says why).
        A host that failed, is offline, was refused or skipped is left as it is."""
        if self.status != "ok" or self.data is None:
            return self
        try:
            rows = row_filter.matching(self.data, tally)
        except Unevaluable as exc:
            return dataclasses.replace(self, note=str(exc))
        return dataclasses.replace(self, data=rows, stdout="", digest="", matched=bool(rows))
