"""run_on_hosts on the service, against the real sshd under several host names.

The fleet on a real tailnet is tests/e2e/tailnet/test_fleet.py; here the same sshd
stands in for many hosts, so bounds, failures and cancellation are cheap to prove.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections import Counter
from pathlib import Path

import pytest

from agent.access.identity import Identity
from agent.app import build_service
from agent.audit.reader import read_records
from agent.core.fanout_run import FanoutResult
from agent.core.service import AgentService
from agent.errors import ConfigError, RateLimited, UnknownHost
from agent.fanout.strategy import StrategyRequest
from agent.settings import load_settings
from tests.support.cancels import (
    busy_slots,
    cancel_storm,
    chatter_catalog,
    marker,
    still_running,
    unended,
)
from tests.support.sshd import Sshd
from whitelist import ParameterError, load_catalog

LOCAL = Identity(login="me", node="here", source="local")
PLAIN_NAP = """
commands:
  nap_plain:
    description: Sleep long (a plain command line, on the fast path).
    category: Test
    template: "sleep {mark}"
    timeout: 30
"""
ALICE = Identity(login="alice@example.com", node="laptop.tailnet.test")
# Durations of this run's own: the processes of each are counted on the test's sshd.
MARKED_SLEEP = {"marked_nap": f"sleep {marker()}", "marked_nap_exec": f"sleep {marker()}"}
CATALOG = f"""
commands:
  nap:
    description: Sleep a little, then print the time in ms.
    category: Test
    template: "sleep {{seconds}} && date +%s%3N"
    timeout: 30
    parameters:
      seconds:
        type: integer
        description: how long
        minimum: 0
        maximum: 20
  marked_nap:
    description: Sleep long, on the fast path.
    category: Test
    template: "{MARKED_SLEEP['marked_nap']}"
    timeout: 30
  marked_nap_exec:
    description: Sleep long, on an exec channel.
    category: Test
    template: "{MARKED_SLEEP['marked_nap_exec']}"
    timeout: 30
    destructive: true
  db_only:
    description: Only for database hosts.
    category: Test
    template: "hostname"
    hosts: ["db-*"]
"""
ALICE_POLICY = """
default: none
rules:
  - name: alice-web
    who: [alice@example.com]
    hosts: ["web-*"]
  - name: alice-db-look
    who: [alice@example.com]
    hosts: ["db-*"]
    commands: [uptime]
"""


def service_for(sshd: Sshd, tmp_path: Path, names: list[str], *, policy: str | None = None,
                broken: tuple[str, ...] = (), catalog: str = CATALOG,
                **values: object) -> AgentService:
    (tmp_path / "extra.yaml").write_text(catalog)
    hosts = {}
    for name in names:
        host = sshd.host_config(name)
        if name in broken:  # nothing listens there
            host = dataclasses.replace(host, port=1)
        hosts[name] = host
    policy_file = None
    if policy is not None:
        policy_file = tmp_path / "policy.yaml"
        policy_file.write_text(policy)
    settings = dataclasses.replace(
        load_settings({}, env_file=None), hosts=hosts, default_host=names[0],
        audit_log=tmp_path / "audit.jsonl", policy_file=policy_file, **values)
    return build_service(settings, mode="local",
                         catalog=load_catalog([tmp_path / "extra.yaml"]))


async def test_hosts_run_at_most_the_configured_number_at_once(
    sshd: Sshd, tmp_path: Path
) -> None:
    names = [f"web-{i}" for i in range(6)]
    service = service_for(sshd, tmp_path, names, fanout_concurrency=2)
    try:
        started = time.monotonic()
        result = await service.run_on_hosts("nap", {"seconds": 1}, ["all"], identity=LOCAL)
        elapsed = time.monotonic() - started
    finally:
        await service.pool.close()
    assert result.summary == {"total": 6, "ok": 6, "failed": 0, "offline": 0, "refused": 0,
                              "skipped": 0}
    assert elapsed >= 3.0, elapsed  # 6 one-second naps, two at a time
    ends = sorted(int(o.stdout) for o in result.hosts)
    # Three waves of two: hosts finishing together come in pairs a second apart.
    assert ends[2] - ends[0] >= 900 and ends[4] - ends[2] >= 900, ends


async def test_one_unreachable_host_never_fails_the_others(sshd: Sshd, tmp_path: Path) -> None:
    names = ["web-1", "web-2", "web-3"]
    service = service_for(sshd, tmp_path, names, broken=("web-2",))
    progress: list[tuple[int, int, str]] = []

    async def seen(done: int, total: int, message: str) -> None:
        progress.append((done, total, message.split(":")[0]))

    try:
        result = await service.run_on_hosts("hostname", {}, ["web-*"], identity=LOCAL,
                                            progress=seen)
    finally:
        await service.pool.close()
    statuses = {o.host: o.status for o in result.hosts}
    assert statuses == {"web-1": "ok", "web-2": "failed", "web-3": "ok"}
    failed = next(o for o in result.hosts if o.host == "web-2")
    assert "cannot reach web-2" in failed.error
    assert [p[:2] for p in progress] == [(1, 3), (2, 3), (3, 3)]
    assert {p[2] for p in progress} == set(names)


async def test_the_selection_is_checked_before_anything_runs(sshd: Sshd, tmp_path: Path) -> None:
    service = service_for(sshd, tmp_path, ["web-1", "db-1"])
    try:
        with pytest.raises(UnknownHost, match="'nope'"):
            await service.run_on_hosts("hostname", {}, ["web-1", "nope"], identity=LOCAL)
        with pytest.raises(ConfigError, match="matches none"):
            await service.run_on_hosts("hostname", {}, ["tag:nothing", "zz-*"], identity=LOCAL)
        with pytest.raises(ParameterError):
            await service.run_on_hosts("nap", {"seconds": 99}, ["all"], identity=LOCAL)
        # Duplicates and overlapping selectors name each host once.
        result = await service.run_on_hosts("hostname", {}, ["web-1", "web-*", "all", "web-1"],
                                            identity=LOCAL)
    finally:
        await service.pool.close()
    assert [o.host for o in result.hosts] == ["web-1", "db-1"]
    # Refused before any host, each is recorded once as an invalid call (issue 15: refused
    # calls are recorded and charged), and nothing was rendered or run.
    records = list(read_records(tmp_path / "audit.jsonl"))
    refused = [r for r in records if r["event"] == "end" and r["outcome"] == "invalid"]
    assert len(refused) == 3
    nap = [r for r in records if r.get("command") == "nap"]
    assert [r["event"] for r in nap] == ["start"] and "rendered" not in nap[0]


async def test_policy_and_catalog_bindings_refuse_per_host(sshd: Sshd, tmp_path: Path) -> None:
    service = service_for(sshd, tmp_path, ["web-1", "web-2", "db-1"], policy=ALICE_POLICY)
    try:
        hostname = await service.run_on_hosts("hostname", {}, ["all"], identity=ALICE)
        bound = await service.run_on_hosts("db_only", {}, ["all"], identity=LOCAL)
    finally:
        await service.pool.close()
    assert {o.host: o.status for o in hostname.hosts} == {
        "web-1": "ok", "web-2": "ok", "db-1": "refused"}
    # A caller is told no rule names (issue 15), only what they may not do.
    assert "no rule of the agent's policy grants alice@example.com 'hostname' on host 'db-1'" \
        in next(o.error for o in hostname.hosts if o.host == "db-1")
    assert {o.host: o.status for o in bound.hosts} == {
        "web-1": "refused", "web-2": "refused", "db-1": "ok"}
    assert "does not apply to host 'web-1'" in bound.hosts[0].error


@pytest.mark.parametrize("path", ["fast", "exec"])
async def test_a_cancelled_fan_out_leaves_no_process_on_any_host_and_records_it(
    sshd: Sshd, tmp_path: Path, path: str
) -> None:
    """Cancelled at varied points (before, while and after the commands start), a fan-out
    over 6 hosts returns only once no host runs anything of it (issue 15: each host's call
    kills its remote process group), on the persistent shell and on exec channels: by then
    every host's slot is free again and every host's call has its end record (issue 19).
    All hosts at once (the destructive one would be a canary run by default)."""
    names = [f"web-{i}" for i in range(6)]
    service = service_for(sshd, tmp_path, names)
    command = "marked_nap" if path == "fast" else "marked_nap_exec"  # exec: destructive
    pattern = MARKED_SLEEP[command]
    audit = tmp_path / "audit.jsonl"

    async def yes() -> None:
        return None

    rounds = 12
    try:
        for n in range(rounds):
            task = asyncio.create_task(service.run_on_hosts(
                command, {}, ["all"], identity=LOCAL, confirm=yes,
                strategy=StrategyRequest("parallel")))
            await asyncio.sleep(0.05 + (n % 4) * 0.25)
            cancelled = time.monotonic()
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert time.monotonic() - cancelled < 3.0, n  # nobody waits for the naps
            # The moment the cancel returns: no tree left, no slot held, no call unrecorded.
            assert still_running(sshd, pattern) == [], n
            assert busy_slots(service) == {}, n
            assert unended(audit) == [], n
        # Every host killed what it was running when cancelled (most rounds had started).
        assert all(service.pool.stopped(name) >= 3 for name in names), [
            service.pool.stopped(name) for name in names]
        after = await service.run_on_hosts("hostname", {}, ["all"], identity=LOCAL)
        assert after.summary["ok"] == len(names)  # every slot and connection still good
    finally:
        await service.pool.close()
        left = sshd.processes(pattern)
    assert left == []
    records = list(read_records(audit))
    starts = {r["call"]: r for r in records if r["event"] == "start" and r.get("fanout")
              and r["command"] == command}
    ends = Counter(r["outcome"] for r in records if r["event"] == "end" and r["call"] in starts)
    assert len(starts) == rounds * len(names)
    assert len({r["fanout"] for r in starts.values()}) == rounds  # one id per fan-out
    assert ends == Counter({"cancelled": rounds * len(names)})


@pytest.mark.parametrize("path", ["fast", "exec", "fast-plain"])
async def test_two_hundred_cancels_of_a_six_host_fan_out_leave_nothing_behind(
    sshd: Sshd, tmp_path: Path, path: str
) -> None:
    """Issue 19: 200 fan-outs over 6 hosts, each cancelled at its own moment, spread from
    before the first byte to the middle of the output, in turn as a task is cancelled and
    as the MCP SDK cancels. Whenever a cancel has returned, no host runs anything of it,
    every slot it held is free, and every host's call has its end record, `cancelled`;
    and each slot was freed only once its tree was stopped (checked as each is freed).
    `fast-plain`: a plain command line (`sleep N`), which `timeout` runs without a shell of
    its own on the fast path; its report comes from the process that then becomes
    `timeout`, so the earliest cancels land before `timeout` has made its group."""
    mark = marker()
    names = [f"web-{i}" for i in range(6)]
    command = {"exec": "chatter_exec", "fast": "chatter", "fast-plain": "nap_plain"}[path]
    catalog = (chatter_catalog(command, mark, destructive=path == "exec")
               if path != "fast-plain" else PLAIN_NAP.format(mark=mark))
    service = service_for(sshd, tmp_path, names, catalog=catalog)
    audit = tmp_path / "audit.jsonl"
    try:
        storm = await cancel_storm(service, command, LOCAL, audit=audit, sshd=sshd,
                                   marker=mark)
        after = await service.run_on_hosts("hostname", {}, ["all"], identity=LOCAL)
    finally:
        await service.pool.close()
    stopped = sum(service.pool.stopped(name) for name in names)
    print(storm.summary(f"{path}, 6 hosts") + f"; {stopped} process groups stopped")
    assert storm.clean, storm
    assert storm.seen, "the count never saw the command running: it would prove nothing"
    assert after.summary["ok"] == len(names)  # every slot and connection still good
    records = list(read_records(audit))
    starts = {r["call"] for r in records if r["event"] == "start" and r["command"] == command}
    ends = Counter(r["outcome"] for r in records if r["event"] == "end" and r["call"] in starts)
    assert ends == Counter({"cancelled": len(starts)})
    # Nearly every cancel found the calls started (the earliest came before that), and
    # most found the command running.
    assert len(starts) > storm.cancels * len(names) * 0.9
    assert stopped > storm.cancels * len(names) * 0.5, stopped


async def test_a_flood_of_fan_outs_is_rate_limited_not_broken(
    sshd: Sshd, tmp_path: Path
) -> None:
    """A hostile user fires 150 fan-outs at once over 4 hosts: each is charged once,
    1 + 4/10 = 1.4 tokens (agent.core.limits), so the burst of 40 runs 28 of them (and what
    refilled meanwhile); the others are refused whole, before any host runs. Every host of
    a fan-out that ran is answered; every call is recorded, those the rate limit refused
    beyond the first counted in the window's `limited` record (issue 15)."""
    names = [f"web-{i}" for i in range(4)]
    service = service_for(sshd, tmp_path, names, policy=ALICE_POLICY, rate_burst=40,
                          rate_per_minute=60, identity_concurrency=64)
    try:
        results = await asyncio.gather(*(
            service.run_on_hosts("hostname", {}, ["web-*"], identity=ALICE)
            for _ in range(150)), return_exceptions=True)
    finally:
        await service.pool.close()
    ran = [r for r in results if isinstance(r, FanoutResult)]
    limited = [r for r in results if isinstance(r, RateLimited)]
    assert len(ran) + len(limited) == 150, [r for r in results if r not in ran + limited]
    assert 28 <= len(ran) <= 33, len(ran)  # the burst, plus what refilled meanwhile
    assert all("fan-out over 4 host(s) costs 1.4 calls" in str(e) for e in limited)
    assert Counter(o.status for r in ran for o in r.hosts) == {"ok": 4 * len(ran)}
    service.audit.flush_limited(time.monotonic() + 3600)  # close the window now
    records = list(read_records(tmp_path / "audit.jsonl"))
    events = Counter(r["event"] for r in records)
    assert events["start"] == events["end"]
    hosts = sum(1 for r in records if r["event"] == "start" and r.get("fanout"))
    assert hosts == 4 * len(ran)
    counted = sum(r["calls"] for r in records if r["event"] == "limited")
    assert events["start"] - hosts + counted == len(limited)


async def test_hostile_selections_are_answered_at_once(sshd: Sshd, tmp_path: Path) -> None:
    service = service_for(sshd, tmp_path, ["web-1", "web-2"])
    try:
        started = time.monotonic()
        with pytest.raises(UnknownHost):
            await service.run_on_hosts("hostname", {}, [f"nope-{i}" for i in range(10_000)],
                                       identity=LOCAL)
        with pytest.raises(ConfigError, match="matches none"):
            await service.run_on_hosts("hostname", {}, ["*" * 5000 + "x", "?" * 5000],
                                       identity=LOCAL)
        many = await service.run_on_hosts("hostname", {}, ["web-1"] * 10_000 + ["w*"] * 1000,
                                          identity=LOCAL)
        assert time.monotonic() - started < 5.0
    finally:
        await service.pool.close()
    assert [o.host for o in many.hosts] == ["web-1", "web-2"]
