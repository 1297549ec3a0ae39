"""Approvals without fatigue: time-limited approvals, and the two-person rule.

An approval covers exactly one `Action`: this caller (a tagged node by its node too), this
command, on this host, this exact command line, run as this user, under the rule that
asked for a confirmation. Time-limited: whoever confirms a destructive command may also
approve that action for N minutes (N bounded by the rule); until then the same action
runs without asking and cites the approval. Anything else (another command with the same
text, another user, host, caller or node, another rule) asks again. A caller's own yes
never covers an action whose rule wants a second person. Approvals live in memory: a
restart forgets them.

Two-person: a rule with `approvers` makes a destructive call wait (bounded) until a
different identity matching one of them approves or denies it on the chat page's
approvals view. Pending requests are bounded per caller and in all, so a flood of them
is refused at once instead of queueing.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from agent.access.identity import Identity
from agent.errors import CallRefused, LimitExceeded, NotConfirmed

MAX_APPROVALS = 1000
MAX_PENDING = 100
MAX_PENDING_PER_CALLER = 5


def _iso(at: datetime) -> str:
    return at.isoformat(timespec="seconds")


@dataclass(frozen=True)
class Action:
    """What one approval covers, and nothing wider."""

    caller: str  # Identity.key: a person by login; a tagged node by its tags and its node
    command: str
    host: str
    rendered: str
    runs_as: str | None
    rule: str  # the policy rule that allowed it (and asked for a confirmation)
    approvers: tuple[str, ...] = ()  # that rule's second persons (two-person rule)


@dataclass(frozen=True)
class Approval:
    """Calls of exactly `action` run without asking until `until`."""

    id: str
    action: Action
    approved_by: str  # the principal who said yes
    second_person: bool  # said by someone other than the caller (two-person rule)
    minutes: int
    until: datetime
    expires: float  # monotonic

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "approved_by": self.approved_by, "minutes": self.minutes,
                "until": _iso(self.until)}


class Approvals:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._by_action: OrderedDict[Action, Approval] = OrderedDict()

    def grant(self, action: Action, minutes: int, approved_by: Identity) -> Approval:
        approval = Approval(
            id="appr-" + secrets.token_hex(6), action=action,
            approved_by=approved_by.principal, second_person=approved_by.key != action.caller,
            minutes=minutes, until=datetime.now(UTC) + timedelta(minutes=minutes),
            expires=self._clock() + minutes * 60)
        self._by_action.pop(action, None)
        self._by_action[action] = approval
        while len(self._by_action) > MAX_APPROVALS:
            self._by_action.popitem(last=False)
        return approval

    def find(self, action: Action) -> Approval | None:
        """The approval still running for exactly `action`; under a two-person rule only a
        second person's counts."""
        approval = self._by_action.get(action)
        if approval is not None and approval.expires <= self._clock():
            del self._by_action[action]
            return None
        if approval is not None and action.approvers and not approval.second_person:
            return None
        return approval


@dataclass(frozen=True)
class Verdict:
    approved: bool
    by: Identity
    minutes: int
    at: datetime

    def to_dict(self) -> dict[str, Any]:
        return {"decision": "approved" if self.approved else "denied",
                "identity": self.by.principal, "node": self.by.node, "at": _iso(self.at),
                "minutes": self.minutes}


@dataclass
class ApprovalRequest:
    id: str
    requester: Identity
    host: str
    command: str
    parameters: Mapping[str, object]
    rendered: str
    runs_as: str | None
    approvers: tuple[str, ...]
    max_minutes: int
    created: datetime
    expires: float  # monotonic
    verdict: asyncio.Future[Verdict] = field(repr=False, compare=False,
                                             default_factory=lambda: asyncio.get_running_loop()
                                             .create_future())

    @property
    def who_may_approve(self) -> str:
        return ", ".join(self.approvers)


# Whether `approver` may decide a request of `requester` (Policy.may_approve).
Eligible = Callable[[Identity, Identity, tuple[str, ...]], bool]


class PendingApprovals:
    """Requests waiting for a second person, by id."""

    def __init__(self, eligible: Eligible, clock: Callable[[], float] = time.monotonic) -> None:
        self._eligible = eligible
        self._clock = clock
        self._requests: dict[str, ApprovalRequest] = {}

    def open(self, requester: Identity, *, host: str, command: str,
             parameters: Mapping[str, object], rendered: str, runs_as: str | None,
             approvers: tuple[str, ...], max_minutes: int, timeout: float) -> ApprovalRequest:
        mine = sum(1 for r in self._requests.values() if r.requester.key == requester.key)
        if mine >= MAX_PENDING_PER_CALLER or len(self._requests) >= MAX_PENDING:
            raise LimitExceeded(
                f"too many commands are waiting for approval ({mine} of yours, "
                f"{len(self._requests)} in all); wait for them to be decided, then ask again.")
        request = ApprovalRequest(
            id=secrets.token_hex(6), requester=requester, host=host, command=command,
            parameters=dict(parameters), rendered=rendered, runs_as=runs_as,
            approvers=approvers, max_minutes=max_minutes, created=datetime.now(UTC),
            expires=self._clock() + timeout)
        self._requests[request.id] = request
        return request

    async def wait(self, request: ApprovalRequest) -> Verdict:
        """The decision, or NotConfirmed when nobody decided in time (or the call ended)."""
        try:
            return await asyncio.wait_for(asyncio.shield(request.verdict),
                                          max(0.0, request.expires - self._clock()))
        except TimeoutError:
            raise NotConfirmed(
                f"nobody approved {request.command!r} on {request.host!r} in time "
                f"({request.who_may_approve} may); nothing ran. Ask one of them to look at the "
                "agent's chat page (Approvals) and run it again.") from None
        finally:
            self._requests.pop(request.id, None)

    def visible_to(self, viewer: Identity) -> list[ApprovalRequest]:
        """What `viewer` may decide, oldest first (never their own requests)."""
        now = self._clock()
        return [r for r in self._requests.values()
                if r.expires > now and self._eligible(viewer, r.requester, r.approvers)]

    def asked_by(self, viewer: Identity) -> list[ApprovalRequest]:
        return [r for r in self._requests.values() if r.requester.key == viewer.key]

    def decide(self, request_id: str, approver: Identity, *, approve: bool,
               minutes: int = 0) -> ApprovalRequest:
        request = self._requests.get(request_id)
        if request is None or request.verdict.done() or request.expires <= self._clock():
            raise CallRefused("that request is no longer waiting (decided, timed out or "
                              "withdrawn)")
        if approver.key == request.requester.key:
            raise CallRefused("you asked for this command: another person "
                              f"({request.who_may_approve}) must approve it")
        if not self._eligible(approver, request.requester, request.approvers):
            raise CallRefused(f"only {request.who_may_approve} may decide this request, "
                              "and never the person who asked")
        request.verdict.set_result(Verdict(approve, approver, min(max(0, minutes),
                                                                   request.max_minutes),
                                           datetime.now(UTC)))
        return request

    def __len__(self) -> int:
        return len(self._requests)

