"""Approvals bind the whole action, through AgentService.run (issue 20, finding 1), with a
Runner that records instead of dialing SSH (tests/support/recording.py); the real-sshd
side is tests/e2e/ssh/test_service_approvals.py.

Before: a time-limited approval was looked up by (caller, host, command line) before the
two-person rule was checked, and neither the command's name nor the user it runs as was
part of the key. Alice's own 60-minute yes for `touch_self` ran `touch_root` (the same text,
as root, under a rule with `approvers`) at once, and Bob's 30-minute yes for another
two-person command covered it too.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import pytest

from agent.access.identity import Identity
from agent.audit.reader import read_calls
from agent.core.service import AgentService
from agent.errors import NotConfirmed
from agent.hosts.registry import Presence
from agent.output.results import CommandResult
from tests.support.recording import (
    ALICE,
    BOB,
    CAROL,
    CI_1,
    CI_2,
    PATH,
    POLICY,
    Person,
    policy,
    ran,
    tailnet_host,
)
from tests.support.waiting import wait_until


async def put_to_a_second_person(service: AgentService,
                                 call: asyncio.Task[CommandResult]) -> str:
    """The id of the approval request `call` waits on (Bob may decide it); fails if the call
    ended without asking anyone (it ran on an approval that did not cover it)."""
    def asked() -> str | None:
        if requests := service.pending.visible_to(BOB):
            return requests[0].id
        if call.done():
            raise AssertionError(f"nobody was asked: {call.result()}")
        return None

    request = await wait_until(asked, 5, "an approval request for Bob", every=0.01)
    assert request is not None
    return request


async def test_alices_own_hour_long_yes_does_not_run_the_two_person_command_as_root(
    service: AgentService, tmp_path: Path
) -> None:
    alice = Person(minutes=60)
    await service.run("touch_self", {"path": PATH}, host="web1", identity=ALICE,
                      confirm=alice)
    root = asyncio.create_task(service.run("touch_root", {"path": PATH}, host="web1",
                                           identity=ALICE, confirm=alice))
    request = await put_to_a_second_person(service, root)
    assert ran(service) == [("web1", "touch_self", None)]  # nothing ran as root
    service.pending.decide(request, BOB, approve=False)
    with pytest.raises(NotConfirmed, match=r"bob@example\.com denied 'touch_root'"):
        await root
    assert alice.asked == 1 and ran(service) == [("web1", "touch_self", None)]
    # No record pairs a rule's second persons with the caller's own approval.
    for call in read_calls(tmp_path / "audit.jsonl"):
        start = call.start
        if (start.get("decision") or {}).get("approvers"):
            assert "approval" not in start
            assert start.get("approved_by", {}).get("identity") != start["identity"]


async def test_bobs_half_hour_yes_for_one_two_person_command_does_not_cover_another(
    service: AgentService
) -> None:
    ops = asyncio.create_task(service.run("touch_ops", {"path": PATH}, host="web1",
                                          identity=ALICE, confirm=Person()))
    service.pending.decide(await put_to_a_second_person(service, ops), BOB,
                           approve=True, minutes=30)
    await ops
    again = await service.run("touch_ops", {"path": PATH}, host="web1", identity=ALICE)
    assert again.exit_status == 0  # the same action runs on Bob's approval, nobody asked
    root = asyncio.create_task(service.run("touch_root", {"path": PATH}, host="web1",
                                           identity=ALICE, confirm=Person()))
    service.pending.decide(await put_to_a_second_person(service, root), BOB,
                           approve=False)
    with pytest.raises(NotConfirmed):
        await root
    assert [command for _, command, _ in ran(service)] == ["touch_ops", "touch_ops"]


Change = Callable[[AgentService], None]


def become_admin(service: AgentService) -> None:
    """The tailnet host t1 now names another become user."""
    service.hosts.set_tailnet({"t1": (tailnet_host("t1", become="admin"),
                                      Presence(online=True))})


def renamed_rule(service: AgentService) -> None:
    service.policy = policy(POLICY.replace("self-confirmed", "renamed"))


def nothing(service: AgentService) -> None:
    pass


Call = tuple[Identity, str, str]  # who, which command, on which host
MATRIX: dict[str, tuple[Call, Change, Call]] = {
    "another command, same command line": (
        (ALICE, "touch_self", "web1"), nothing, (ALICE, "touch_also", "web1")),
    "another user to run as": (
        (ALICE, "touch_elevated", "t1"), become_admin, (ALICE, "touch_elevated", "t1")),
    "another host": ((ALICE, "touch_self", "web1"), nothing, (ALICE, "touch_self", "web2")),
    "another caller": ((ALICE, "touch_self", "web1"), nothing, (CAROL, "touch_self", "web1")),
    "another node with the same tags": (
        (CI_1, "touch_self", "web1"), nothing, (CI_2, "touch_self", "web1")),
    "another rule": (
        (ALICE, "touch_self", "web1"), renamed_rule, (ALICE, "touch_self", "web1")),
}


@pytest.mark.parametrize("case", list(MATRIX))
async def test_an_approval_covers_exactly_one_action_anything_else_asks_again(
    service: AgentService, case: str
) -> None:
    (who, command, host), change, (other, other_command, other_host) = MATRIX[case]
    person = Person(minutes=60)
    await service.run(command, {"path": PATH}, host=host, identity=who, confirm=person)
    await service.run(command, {"path": PATH}, host=host, identity=who, confirm=person)
    assert person.asked == 1  # the approval covers the same action again
    change(service)
    await service.run(other_command, {"path": PATH}, host=other_host, identity=other,
                      confirm=person)
    assert person.asked == 2, f"{case}: it ran on the first call's approval"
