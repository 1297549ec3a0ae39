"""A destructive call's confirmation: the step between its preparation and its run.

The prepared call says which confirmation it needs (agent.core.prepare): none, the
caller's own yes, or a second person's (a rule with `approvers`), and which time-limited
approval already covers it. `Consents` gets it: it cites the standing approval (if it
still runs), or opens the two-person request and waits for the verdict, or awaits the
caller's `confirm`; a yes may approve the same action for a while
(agent.core.approvals). How it went is a `Consent`, which the call's audit record
carries, whether the call then runs or not. A caller's own yes is never asked for under a
rule with `approvers`, and never covers one.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from agent.access.policy import Decision
from agent.errors import NotConfirmed, PolicyDenied
from agent.output.live import LiveOutput

from .approvals import Approval, ApprovalRequest, Approvals, PendingApprovals, Verdict
from .prepare import PreparedCall

log = logging.getLogger("tailnet_agent.calls")

# A destructive command's confirmation: raises NotConfirmed for no; for yes, returns the
# minutes for which identical calls are approved too (0 or None: this call only).
Confirm = Callable[[], Awaitable[int | None]]

@dataclass(frozen=True)
class Consent:
    """How one destructive call was confirmed, or why not (its audit record says so)."""

    confirmed: bool
    approval: Approval | None = None  # a time-limited approval that covered it
    request: ApprovalRequest | None = None  # the two-person request it waited on
    verdict: Verdict | None = None  # the second person's answer to it
    granted: Approval | None = None  # identical calls approved from now on
    refusal: str = ""  # why it was not confirmed (raised as NotConfirmed)

    def fields(self) -> dict[str, Any]:
        data: dict[str, Any] = {"confirmed": self.confirmed}
        if self.approval is not None:
            data["approval"] = self.approval.to_dict()
        if self.request is not None:
            data["approval_request"] = {"id": self.request.id,
                                        "approvers": list(self.request.approvers)}
        if self.verdict is not None:
            data["approved_by"] = self.verdict.to_dict()
        if self.granted is not None:
            data["approval_granted"] = self.granted.to_dict()
        return data


class Consents:
    """Confirms destructive calls against the approvals still running and the requests
    waiting for a second person."""

    def __init__(self, approvals: Approvals, pending: PendingApprovals, timeout: float) -> None:
        self.approvals = approvals
        self.pending = pending
        self.timeout = timeout  # how long a two-person request waits (seconds)

    def begin(self, call: PreparedCall, confirm: Confirm | None) -> Consent:
        """A destructive call's confirmation, as far as it goes without waiting: the standing
        approval the preparation found (if it still runs), the two-person request opened
        (LimitExceeded when too many wait), or the caller to be asked (PolicyDenied when
        this front end cannot ask them)."""
        if call.standing is not None:
            approval = self.approvals.find(call.action)
            if approval is None:
                return Consent(False, refusal=(
                    f"the time-limited approval {call.standing.id} that covered "
                    f"{call.command.name!r} on host {call.host.name!r} ended before it ran; "
                    "nothing ran. Run it again to be asked."))
            return Consent(True, approval=approval)
        if call.confirmation == "approvers":
            request = self.pending.open(
                call.identity, host=call.host.name, command=call.command.name,
                parameters=call.arguments, rendered=call.rendered, runs_as=call.runs_as,
                approvers=call.decision.approvers, max_minutes=call.decision.approval_minutes,
                timeout=self.timeout)
            return Consent(False, request=request)
        if confirm is None:
            raise PolicyDenied(
                f"{call.command.name!r} is destructive and needs a person's confirmation, "
                "which this caller cannot give; nothing ran.",
                Decision(False, "destructive commands need a confirmation", "no confirmation"),
            )
        return Consent(False)

    async def complete(self, call: PreparedCall, consent: Consent, confirm: Confirm | None,
                       live: LiveOutput | None) -> Consent:
        """`consent` completed: the second person's verdict (awaited) or the caller's own
        yes (`confirm`), and the time-limited approval either grants. A caller's own yes
        is never asked for under a rule with `approvers`, and never covers one."""
        if consent.confirmed or consent.refusal:
            return consent
        request = consent.request
        if request is not None:
            waiting = (f"waiting for approval by {request.who_may_approve} (request "
                       f"{request.id}); they decide on the agent's chat page, Approvals")
            log.info("%s: %s on %s %s", call.identity.display, call.command.name,
                     call.host.name, waiting)
            if live is not None:
                live.note(waiting)
            try:
                verdict = await self.pending.wait(request)
            except NotConfirmed as exc:
                return dataclasses.replace(consent, refusal=str(exc))
            consent = dataclasses.replace(consent, verdict=verdict)
            if not verdict.approved:
                return dataclasses.replace(consent, refusal=(
                    f"{verdict.by.principal} denied {call.command.name!r} on host "
                    f"{call.host.name!r}; nothing ran."))
            minutes, approver = verdict.minutes, verdict.by
        else:
            assert confirm is not None  # `begin` refused the call without one
            try:
                minutes, approver = (await confirm()) or 0, call.identity
            except NotConfirmed as exc:
                return dataclasses.replace(consent, refusal=str(exc))
        minutes = min(minutes, call.decision.approval_minutes)
        granted = self.approvals.grant(call.action, minutes, approver) if minutes > 0 else None
        return dataclasses.replace(consent, confirmed=True, granted=granted)
