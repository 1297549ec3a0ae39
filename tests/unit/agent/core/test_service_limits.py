"""The service's limits and grants, decided before anything runs: the rate budget (refused
and invalid calls pay too), the calls in flight per caller and per host, a fan-out's own
concurrency bound, and a tailnet grant deciding which hosts and commands run.

The service is real; its Runner records what would have run (tests/support/recording.py),
and, gated, holds every command until the test lets it go, so "how many at once" is
counted, not timed. The same limits against a real sshd: tests/e2e/ssh/test_service.py and
test_fanout.py.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from agent.access.grants import parse_grant
from agent.access.identity import Identity
from agent.errors import HostBusy, NotForHost, PolicyDenied, RateLimited, UnknownHost
from agent.fanout.strategy import StrategyRequest
from tests.support.recording import (
    ALICE,
    BOB,
    CAROL,
    RecordingRunner,
    fleet_service,
    policy,
    ran,
)
from tests.support.waiting import wait_until
from whitelist.errors import UnknownCommandError

OPERATOR = Identity(login="me", node="here", source="local")


async def test_every_call_takes_a_token_refused_and_invalid_ones_too(tmp_path: Path) -> None:
    service = fleet_service(tmp_path, ["web1", "web2"], rate_burst=3, rate_per_minute=1)
    with pytest.raises(UnknownCommandError):
        await service.run("no_such_command", {}, host="web1", identity=ALICE)
    with pytest.raises(NotForHost, match="the catalog binds it to web2"):
        await service.run("touch_web2", {"path": "/tmp/x"}, host="web1", identity=ALICE)
    await service.run("disk_usage", {}, host="web1", identity=ALICE)
    with pytest.raises(RateLimited, match=r"alice@example\.com made more than 3 calls"):
        await service.run("disk_usage", {}, host="web1", identity=ALICE)
    assert ran(service) == [("web1", "disk_usage", None)]
    # Another caller has a budget of their own; the person at the machine has none.
    await service.run("disk_usage", {}, host="web2", identity=BOB)
    for _ in range(10):
        await service.run("disk_usage", {}, host="web2", identity=OPERATOR)
    assert len(ran(service)) == 12


async def test_calls_in_flight_are_bounded_per_caller_then_per_host_never_for_the_operator(
    tmp_path: Path,
) -> None:
    runner = RecordingRunner(gated=True)
    service = fleet_service(tmp_path, ["web1", "web2"], runner=runner,
                            identity_concurrency=2, host_concurrency=3)

    def start(identity: Identity, host: str = "web1") -> asyncio.Task[object]:
        return asyncio.create_task(service.run("disk_usage", {}, host=host, identity=identity))

    async def refused(identity: Identity) -> None:
        """A refusal comes at once; a call let in would wait for the gate (never, here)."""
        try:
            await asyncio.wait_for(service.run("disk_usage", {}, host="web1", identity=identity),
                                   5)
        except TimeoutError:
            raise AssertionError(f"{identity.login} was let in, not refused") from None

    held = [start(ALICE), start(ALICE)]
    await wait_until(lambda: runner.running == 2, 5, "Alice's two calls running")
    with pytest.raises(HostBusy, match="TAILNET_AGENT_IDENTITY_CONCURRENCY"):
        await refused(ALICE)
    held.append(start(BOB))  # the third place on web1
    await wait_until(lambda: runner.running == 3, 5, "Bob's call running")
    with pytest.raises(HostBusy, match=r"host 'web1' already has 3 calls in flight"):
        await refused(CAROL)
    held += [start(CAROL, "web2"), start(OPERATOR)]  # another host; the operator
    await wait_until(lambda: runner.running == 5, 5, "Carol's call on web2 and the operator's")
    runner.release.set()
    await asyncio.gather(*held)
    assert service.host_gate.in_flight("web1") == 0  # every place given back
    await service.run("disk_usage", {}, host="web1", identity=ALICE)
    assert len(ran(service)) == 6


async def test_a_fan_out_runs_at_most_fanout_concurrency_hosts_at_once(tmp_path: Path) -> None:
    runner = RecordingRunner(gated=True)
    names = [f"web-{i:02d}" for i in range(1, 11)]
    service = fleet_service(tmp_path, names, runner=runner, fanout_concurrency=3)
    fanout = asyncio.create_task(service.run_on_hosts(
        "disk_usage", {}, ["all"], identity=OPERATOR, strategy=StrategyRequest("parallel")))
    await wait_until(lambda: runner.running == 3, 5, "three hosts running")
    for _ in range(20):  # the loop gets every chance to start a fourth
        await asyncio.sleep(0)
    assert runner.running == 3
    runner.release.set()
    result = await fanout
    assert result.summary["ok"] == 10 and runner.peak == 3
    assert sorted(host for host, _, _ in ran(service)) == names


async def test_a_tailnet_grant_decides_which_hosts_and_commands_run(tmp_path: Path) -> None:
    grant = parse_grant({"hosts": ["web-1*"], "commands": ["disk_*"]}, "a tailnet grant",
                        name="tailnet grant")
    dave = Identity(login="dave@example.com", node="dave-laptop", grants=(grant,))
    names = ["web-10", "web-11", "web-20"]
    service = fleet_service(tmp_path, names, rules=policy("default: none\n"))
    result = await service.run_on_hosts("disk_usage", {}, ["all"], identity=dave,
                                        strategy=StrategyRequest("parallel"))
    assert result.summary["ok"] == 2
    assert sorted(host for host, _, _ in ran(service)) == ["web-10", "web-11"]
    with pytest.raises(PolicyDenied, match=r"may not run 'uptime' on host 'web-10'"):
        await service.run("uptime", {}, host="web-10", identity=dave)
    # A host the grant does not name is answered as one that does not exist.
    with pytest.raises(UnknownHost, match=r"hosts you can use: web-10, web-11$"):
        await service.run("disk_usage", {}, host="web-20", identity=dave)
    assert len(ran(service)) == 2  # nothing else ran
