"""Time-limited approvals and two-person requests (agent/core/approvals.py), with the policy
fields that bound them."""

from __future__ import annotations

import asyncio
import dataclasses

import pytest

from agent.access.identity import Identity
from agent.access.policy import parse_policy
from agent.core.approvals import MAX_PENDING_PER_CALLER, Action, Approvals, PendingApprovals
from agent.errors import CallRefused, ConfigError, LimitExceeded, NotConfirmed
from whitelist import Command

ALICE = Identity(login="alice@example.com", node="alice-laptop")
BOB = Identity(login="bob@example.com", node="bob-laptop")
CAROL = Identity(login="carol@example.com", node="carol-laptop")
CI = Identity(login=None, node="ci", tags=("tag:ci",))
RESTART = Command(name="restart", description="d", category="c", template="systemctl restart x",
                  destructive=True)
POLICY = parse_policy({
    "groups": {"group:ops": ["alice@example.com", "bob@example.com"]},
    "rules": [
        {"name": "alice-restarts", "who": ["alice@example.com"], "destructive": True,
         "approvers": ["group:ops"], "approval_minutes": 30},
        {"name": "carol-quick", "who": ["carol@example.com"], "destructive": True,
         "approval_minutes": 0},
    ],
}, "test")


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def action(caller: Identity = ALICE, host: str = "web1",
           rendered: str = "systemctl restart nginx", **fields: object) -> Action:
    values: dict[str, object] = {"command": "restart", "runs_as": None,
                                 "rule": "carol-quick", **fields}
    return Action(caller.key, host=host, rendered=rendered, **values)  # type: ignore[arg-type]


def test_an_approval_covers_exactly_its_action_until_it_expires() -> None:
    clock = Clock()
    approvals = Approvals(clock)
    granted = approvals.grant(action(), 15, ALICE)
    assert approvals.find(action()) == granted
    for other in (action(BOB), action(host="web2"), action(rendered="systemctl restart x"),
                  action(command="restart2"), action(runs_as="root"), action(rule="other"),
                  action(CI), action(dataclasses.replace(CI, node="ci-2"))):
        assert approvals.find(other) is None, other
    clock.now += 15 * 60 - 1
    assert approvals.find(action()) is not None
    clock.now += 1
    assert approvals.find(action()) is None


def test_a_callers_own_yes_never_stands_in_for_a_second_person() -> None:
    approvals = Approvals()
    two_person = action(rule="alice-restarts", approvers=("group:ops",))
    approvals.grant(two_person, 30, ALICE)
    assert approvals.find(two_person) is None
    by_bob = approvals.grant(two_person, 30, BOB)
    assert approvals.find(two_person) == by_bob and by_bob.second_person


def test_the_policy_bounds_approvals_and_names_second_approvers() -> None:
    decision = POLICY.decide(ALICE, RESTART, "web1")
    assert decision.allowed and decision.approvers == ("group:ops",)
    assert decision.approval_minutes == 30
    assert POLICY.decide(CAROL, RESTART, "web1").approval_minutes == 0
    # Bob is in group:ops; Alice is too, but never for her own request; Carol is not.
    assert POLICY.may_approve(BOB, ALICE, ("group:ops",))
    assert not POLICY.may_approve(ALICE, ALICE, ("group:ops",))
    assert not POLICY.may_approve(CAROL, ALICE, ("group:ops",))
    assert not POLICY.may_approve(CI, ALICE, ("*",))  # a tagged node is nobody's second person
    for bad, message in (
        ({"rules": [{"name": "x", "approvers": ["group:nope"]}]}, "not defined"),
        ({"rules": [{"name": "x", "approval_minutes": -1}]}, "approval_minutes"),
        ({"rules": [{"name": "x", "approval_minutes": 5000}]}, "approval_minutes"),
    ):
        with pytest.raises(ConfigError, match=message):
            parse_policy(bad, "test")


async def test_a_request_waits_for_another_eligible_person() -> None:
    pending = PendingApprovals(POLICY.may_approve)

    def ask() -> object:
        return pending.open(ALICE, host="web1", command="restart", parameters={"unit": "x"},
                            rendered="systemctl restart x", runs_as=None,
                            approvers=("group:ops",), max_minutes=30, timeout=5)

    request = ask()
    waiting = asyncio.create_task(pending.wait(request))  # type: ignore[arg-type]
    await asyncio.sleep(0)
    assert pending.visible_to(BOB) == [request] and pending.visible_to(ALICE) == []
    assert pending.visible_to(CAROL) == [] and pending.asked_by(ALICE) == [request]
    with pytest.raises(CallRefused, match="you asked for this"):
        pending.decide(request.id, ALICE, approve=True)  # type: ignore[attr-defined]
    with pytest.raises(CallRefused, match="only group:ops"):
        pending.decide(request.id, CAROL, approve=True)  # type: ignore[attr-defined]
    pending.decide(request.id, BOB, approve=True, minutes=999)  # type: ignore[attr-defined]
    verdict = await waiting
    assert verdict.approved and verdict.by == BOB and verdict.minutes == 30  # bounded
    assert len(pending) == 0
    with pytest.raises(CallRefused, match="no longer waiting"):
        pending.decide(request.id, BOB, approve=False)  # type: ignore[attr-defined]


async def test_requests_time_out_and_are_bounded_per_caller() -> None:
    clock = Clock()
    pending = PendingApprovals(POLICY.may_approve, clock)
    requests = [pending.open(ALICE, host="web1", command="restart", parameters={},
                             rendered=f"r{i}", runs_as=None, approvers=("group:ops",),
                             max_minutes=0, timeout=0.05)
                for i in range(MAX_PENDING_PER_CALLER)]
    with pytest.raises(LimitExceeded, match="waiting for approval"):
        pending.open(ALICE, host="web1", command="restart", parameters={}, rendered="r",
                     runs_as=None, approvers=("group:ops",), max_minutes=0, timeout=5)
    with pytest.raises(NotConfirmed, match="nobody approved 'restart'"):
        await pending.wait(requests[0])
    assert len(pending) == MAX_PENDING_PER_CALLER - 1
