"""Decide once (agent/core/prepare.py): a call prepared carries everything a front end
shows or decides, and `execute` runs it only under the policy and host it was prepared
with. A Runner records instead of dialing SSH (tests/support/recording.py)."""

from __future__ import annotations

import pytest

from agent.access.identity import Identity
from agent.core.fanout_run import plan
from agent.core.prepare import PreparedCall, Unprepared
from agent.core.service import AgentService
from agent.errors import CallChanged, NotForHost, PolicyDenied, UnknownHost
from agent.hosts.registry import Presence
from tests.support.recording import (
    ALICE,
    BOB,
    PATH,
    POLICY,
    Person,
    policy,
    ran,
    tailnet_host,
)
from whitelist import ParameterError


def test_a_prepared_call_says_everything_a_front_end_shows_or_decides(
    service: AgentService
) -> None:
    call = service.prepare("touch_root", {"path": PATH}, host=None, identity=ALICE)
    assert isinstance(call, PreparedCall)
    assert (call.host.name, call.rendered, call.runs_as) == ("web1", f"touch -- {PATH}", "root")
    assert (call.decision.rule, call.decision.approvers) == ("two-person", ("group:ops",))
    assert (call.confirmation, call.asks, call.standing) == ("approvers", "approvers", None)
    assert call.action.caller == ALICE.key and call.action.runs_as == "root"
    assert "on host 'web1' as root?" in call.question and f"touch -- {PATH}" in call.question
    mine = service.prepare("touch_self", {"path": PATH}, host="web1", identity=ALICE)
    assert isinstance(mine, PreparedCall) and mine.asks == "caller"
    assert "approve identical calls for up to 60 minutes" in mine.question


def test_the_policy_is_asked_before_the_arguments_are_checked(service: AgentService) -> None:
    # Bob may run none of these: he learns no parameter rule, whatever he sends.
    refused = service.prepare("touch_self", {"path": "relative"}, host="web1", identity=BOB)
    assert isinstance(refused, Unprepared) and isinstance(refused.error, PolicyDenied)
    assert refused.decision is not None and "absolute" not in str(refused.error)
    invalid = service.prepare("touch_self", {"path": "relative"}, host="web1", identity=ALICE)
    assert isinstance(invalid, Unprepared) and isinstance(invalid.error, ParameterError)


@pytest.mark.parametrize("nobody", [
    Identity(login=None, node="stray.tailnet.test", tags=("tag:stray",)),  # no rule at all
    BOB,  # a rule, for metrics only
])
def test_a_caller_who_may_use_no_host_is_answered_alike_for_real_and_made_up_hosts(
    service: AgentService, nobody: Identity
) -> None:
    service.policy = policy(POLICY.replace("rules:", """default: none
rules:
  - name: bob-metrics
    who: [bob@example.com]
    commands: []
    metrics: true""", 1))
    answers = set()
    for host in ("web1", "t1", "made-up", "web*", None):
        call = service.prepare("touch_self", {"path": PATH}, host=host, identity=nobody)
        assert isinstance(call, Unprepared) and isinstance(call.error, PolicyDenied)
        answers.add(str(call.error).replace(repr(host), "X") if host else str(call.error))
    assert len(answers) == 1, answers
    assert "web1" not in answers.pop()


def test_the_catalogs_host_binding_is_part_of_the_decision(service: AgentService) -> None:
    call = service.prepare("touch_web2", {"path": PATH}, host="web1", identity=ALICE)
    assert isinstance(call, Unprepared) and isinstance(call.error, NotForHost)
    assert isinstance(service.prepare("touch_web2", {"path": PATH}, host="web2",
                                      identity=ALICE), PreparedCall)
    hidden = service.prepare("touch_self", {"path": PATH}, host="nope", identity=ALICE)
    assert isinstance(hidden, Unprepared) and isinstance(hidden.error, UnknownHost)


async def test_a_call_prepared_under_another_host_or_policy_runs_only_if_it_is_the_same(
    service: AgentService
) -> None:
    person = Person(minutes=0)
    call = service.prepare("touch_elevated", {"path": PATH}, host="t1", identity=ALICE)
    # The host's become user changed while the person read the question.
    service.hosts.set_tailnet({"t1": (tailnet_host("t1", become="admin"),
                                      Presence(online=True))})
    with pytest.raises(CallChanged, match="would now run as admin"):
        await service.execute(call, confirm=person)
    assert person.asked == 0 and ran(service) == []
    # Prepared under a policy replaced by one that decides the same: it runs.
    call = service.prepare("touch_self", {"path": PATH}, host="web1", identity=ALICE)
    service.policy = policy()
    await service.execute(call, confirm=person)
    assert person.asked == 1 and ran(service) == [("web1", "touch_self", None)]


async def test_a_fan_out_confirms_exactly_the_hosts_that_ask_the_caller(
    service: AgentService
) -> None:
    person = Person(minutes=60)
    await service.run("touch_self", {"path": PATH}, host="web2", identity=ALICE,
                      confirm=person)
    fanout = plan(service, "touch_self", {"path": PATH}, ["all"], ALICE)
    assert fanout.hosts == ("web1", "web2", "t1") and fanout.runnable == fanout.hosts
    # web2 runs on the approval just given: the question names the other two.
    assert fanout.confirmed_by_caller == ("web1", "t1")
    assert fanout.question.startswith("Run destructive command 'touch_self' on 2 host(s): "
                                      "web1, t1?")
    result = await service.execute_fanout(fanout, confirm=person)
    assert [o.status for o in result.hosts] == ["ok", "ok", "ok"]
    assert person.asked == 3  # once before, once for each host it named (the same answer)
    refused = plan(service, "touch_self", {"path": "relative"}, ["all"], ALICE)
    assert isinstance(refused.error, ParameterError) and refused.hosts == ()
