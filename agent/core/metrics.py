"""What the service tells a metrics backend: one seam, no metrics library here.

`AgentService` reports each finished call and each audit write failure to a
`Recorder`; agent.web.prometheus implements it with prometheus-client and serves
`/metrics`. Label values are bounded by construction: a command or host name that
is not configured becomes `UNKNOWN`, outcomes and refusal reasons come from the
fixed vocabularies below, and no parameter value or secret is ever a label.
"""

from __future__ import annotations

from typing import Protocol

from agent.errors import (
    AuditUnavailable,
    ConfigError,
    HostBusy,
    HostOffline,
    NotConfirmed,
    NotForHost,
    PolicyDenied,
    RateLimited,
    UnknownHost,
)
from whitelist import WhitelistError

UNKNOWN = "(unknown)"

# Why a call was refused before it ran (the `reason` label of the refusals counter).
REFUSAL_REASONS = ("policy", "rate_limit", "host_busy", "not_confirmed", "audit_unavailable",
                   "unknown_host", "invalid", "not_for_host", "host_offline")


def refusal_reason(exc: BaseException) -> str | None:
    """The refusal reason for an exception that stopped a call before it ran, else None."""
    if isinstance(exc, PolicyDenied):
        return "policy"
    if isinstance(exc, RateLimited):
        return "rate_limit"
    if isinstance(exc, HostBusy):
        return "host_busy"
    if isinstance(exc, NotConfirmed):
        return "not_confirmed"
    if isinstance(exc, AuditUnavailable):
        return "audit_unavailable"
    if isinstance(exc, UnknownHost):
        return "unknown_host"
    if isinstance(exc, NotForHost):
        return "not_for_host"  # the catalog binds the command to other hosts
    if isinstance(exc, HostOffline):
        return "host_offline"  # the tailnet says so: answered without dialing
    if isinstance(exc, WhitelistError | ConfigError):
        return "invalid"  # unknown command, bad parameter
    return None


class Recorder(Protocol):
    def call_finished(
        self, *, tool: str, command: str, host: str, outcome: str, seconds: float | None
    ) -> None:
        """A call is over. `seconds` is how long a command that ran took (None if none ran);
        `outcome` is the audit outcome, with "ran" split into ok / nonzero_exit / timed_out."""

    def refused(self, reason: str) -> None:
        """A call was refused before it ran; `reason` is one of REFUSAL_REASONS."""

    def audit_write_failed(self) -> None:
        """An audit record could not be written."""


class NullRecorder:
    """Records nothing (the default; `mcp --stdio` and tests that do not look)."""

    def call_finished(
        self, *, tool: str, command: str, host: str, outcome: str, seconds: float | None
    ) -> None:
        return None

    def refused(self, reason: str) -> None:
        return None

    def audit_write_failed(self) -> None:
        return None
