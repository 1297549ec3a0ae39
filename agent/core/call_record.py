"""A call's two audit records as typed values, built from its preparation.

`CallStart` is made once, from the prepared call (or the unprepared request), the way it
was confirmed and the fan-out it belongs to; `CallEnd` from the outcome. `Refusal` is
what recording a call refused before it could be executed tells its front end. Each turns into
the fields of its JSON line in one place (`fields`), so the log's format lives here and
agent.audit.reader reads it back. The records hold no secret the service did not
already redact (AgentService scrubs the fields before they reach the log).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from agent.access.identity import Identity
from agent.access.policy import Decision
from agent.audit.recorder import CastRef
from agent.errors import RateLimited
from agent.output.results import CommandResult

from .consent import Consent
from .prepare import Preparation, PreparedCall


@dataclass(frozen=True)
class FanoutPart:
    """Where a call sits in a run_on_hosts call: the fan-out's id (every host's records
    share it), its strategy, and the batch the call ran in (None: answered before any
    batch, refused or offline when the fan-out was planned)."""

    fanout: str
    strategy: str = "parallel"
    batch: int | None = None
    batches: int = 1

    def fields(self) -> dict[str, Any]:
        data: dict[str, Any] = {"fanout": self.fanout, "strategy": self.strategy}
        if self.batch is not None:
            data.update(batch=self.batch, batches=self.batches)
        return data


@dataclass(frozen=True)
class CallStart:
    call: str
    identity: Identity
    tool: str
    command: str | None
    host: str | None  # the host it runs on, or the name the caller asked for
    parameters: object  # the caller's arguments (or a summary of a flood's)
    decision: Decision | None = None
    rendered: str | None = None
    runs_as: str | None = None
    fanout: FanoutPart | None = None  # the run_on_hosts call it is part of
    consent: Consent | None = None  # a destructive call: how it was confirmed

    @classmethod
    def of(cls, call: str, preparation: Preparation, *, tool: str,
           fanout: FanoutPart | None = None,
           consent: Consent | None = None) -> CallStart:
        if isinstance(preparation, PreparedCall):
            return cls(call, preparation.identity, tool, preparation.command.name,
                       preparation.host.name, dict(preparation.arguments),
                       preparation.decision, preparation.rendered, preparation.runs_as, fanout,
                       consent)
        return cls(call, preparation.identity, tool, preparation.command, preparation.host,
                   dict(preparation.arguments), preparation.decision, fanout=fanout)

    def fields(self) -> dict[str, Any]:
        """The start record's fields after time, event, call and the identity's."""
        data: dict[str, Any] = {"tool": self.tool, "command": self.command, "host": self.host,
                                "parameters": self.parameters}
        if self.fanout is not None:
            data.update(self.fanout.fields())
        if self.rendered is not None:
            data["rendered"] = self.rendered
        if self.runs_as is not None:
            data["runs_as"] = self.runs_as
        if self.consent is not None:
            data.update(self.consent.fields())
        data["decision"] = self.decision.to_dict() if self.decision is not None else None
        return data


@dataclass(frozen=True)
class CallEnd:
    call: str
    identity: Identity
    outcome: str  # ran, refused, invalid, limited, not-confirmed, offline, failed, ...
    error: str | None = None  # why it did not run (or failed), as the caller was told
    result: CommandResult | None = None  # what ran
    stdout_head: str = ""  # the start of what the caller was shown, redacted
    cast: CastRef | None = None  # the recording of its output (agent/audit/recorder.py)

    def fields(self) -> dict[str, Any]:
        """The end record's fields after time, event, call and identity."""
        data: dict[str, Any] = {"outcome": self.outcome}
        if self.error is not None:
            data["error"] = self.error
        if self.cast is not None:
            data["cast"] = self.cast.fields()
        result = self.result
        if result is not None:
            data.update(
                exit_status=result.exit_status,
                duration_ms=round(result.duration_ms, 1),
                bytes_out=(result.stdout_bytes or 0) + len(result.stderr.encode()),
                truncated=result.truncated,
                timed_out=result.timed_out,
                redacted=result.redacted,
                output_handle=result.output_handle,
                stdout_head=self.stdout_head,
            )
        return data


@dataclass(frozen=True)
class Refusal:
    """A call refused before it could be executed, as recorded: what to tell the caller."""

    limited: bool  # the caller's rate limit refused it (`message` is the limit's)
    message: str

    def error(self, refused: Exception) -> Exception:
        """What to raise for it: the refusal itself, or the rate limit."""
        return RateLimited(self.message) if self.limited else refused
