"""Canary and rolling runs, and grouped results, on real hosts.

The hosts are the scale benchmark's (tests/bench/scale_hosts.py): one real sshd answering
on 127.0.1.1, 127.0.1.2, ... as distinct hosts, where `hostname` prints the host's own
name and `df` one of three disk states (every fifth host 78 % full, one in fifty 95 %).
The command under test leaves a mark named after the host on the host's side, then fails
where the disk is 78 % full: what ran where is read from the marks, not from the result.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.access.identity import Identity
from agent.app import build_service
from agent.core.service import AgentService
from agent.fanout.hostlist import expand
from agent.fanout.strategy import StrategyRequest
from agent.settings import load_settings
from tests.bench.scale_hosts import LoopbackFleet
from tests.support.sshd import login_writable
from whitelist import load_catalog

LOCAL = Identity(login="me", node="here", source="local")
SIZE = 15  # web-001..web-010, app-001..app-004, db-001; 78 % full: web-005, web-010, db-001


@pytest.fixture(scope="module")
def fleet() -> Iterator[LoopbackFleet]:
    with LoopbackFleet(SIZE, servers=1) as made:
        yield made


@pytest.fixture
def marks() -> Iterator[Path]:
    with login_writable("tnagent-strategy-") as directory:
        yield directory


def service_for(fleet: LoopbackFleet, tmp_path: Path, marks: Path) -> AgentService:
    hosts = fleet.host_configs(SIZE, tmp_path / "fleet")
    (tmp_path / "extra.yaml").write_text(f"""
commands:
  mark_unless_busy:
    description: Leave a mark named after the host; fail where the disk is 78 % full.
    category: Test
    destructive: true
    template: 'touch -- {marks}/"$(hostname)" && ! df | grep -q " 78% /$"'
""")
    settings = dataclasses.replace(
        load_settings({}, env_file=None), hosts=hosts, default_host=next(iter(hosts)),
        audit_log=tmp_path / "audit.jsonl")
    return build_service(settings, mode="local",
                         catalog=load_catalog([tmp_path / "extra.yaml"]))


def marked(marks: Path) -> list[str]:
    return sorted(p.name for p in marks.iterdir())


async def yes() -> int:
    return 0


async def test_a_canary_that_fails_leaves_every_other_host_untouched(
    fleet: LoopbackFleet, tmp_path: Path, marks: Path,
) -> None:
    service = service_for(fleet, tmp_path, marks)
    try:
        # web-005 is named first: the canary (destructive commands default to canary runs).
        result = await service.run_on_hosts("mark_unless_busy", {}, ["web-005", "all"],
                                            identity=LOCAL, confirm=yes)
    finally:
        await service.pool.close()
    assert marked(marks) == ["web-005"]  # it ran there, and nowhere else
    assert result.summary["failed"] == 1 and result.summary["skipped"] == SIZE - 1
    data = result.to_dict()
    (skipped,) = data["groups"]
    assert skipped["status"] == "skipped" and skipped["count"] == SIZE - 1
    assert "the canary host web-005 failed with exit status 1" in skipped["error"]
    assert sorted(expand(skipped["hosts"])) == sorted(
        h.name for h in fleet.first(SIZE) if h.name != "web-005")


async def test_a_rolling_run_stops_after_the_batch_that_goes_past_max_failures(
    fleet: LoopbackFleet, tmp_path: Path, marks: Path,
) -> None:
    """Batches of 3, one failure tolerated: web-005 fails in batch 2, web-010 in batch 4
    (two failures, more than one): batch 5 (app-003, app-004, db-001) never runs."""
    service = service_for(fleet, tmp_path, marks)
    try:
        result = await service.run_on_hosts(
            "mark_unless_busy", {}, ["all"], identity=LOCAL, confirm=yes,
            strategy=StrategyRequest("rolling", batch_size=3, max_failures=1))
    finally:
        await service.pool.close()
    names = [h.name for h in fleet.first(SIZE)]
    assert marked(marks) == sorted(names[:12])
    assert {o.host: o.status for o in result.hosts if o.status != "ok"} == {
        "web-005": "failed", "web-010": "failed", "app-003": "skipped", "app-004": "skipped",
        "db-001": "skipped"}
    assert result.ran_batches == 4 and result.batches == 5
    assert "2 host(s) failed by batch 4 of 5" in result.stopped


async def test_three_disk_states_on_the_fleet_are_three_groups(
    fleet: LoopbackFleet, tmp_path: Path, marks: Path,
) -> None:
    service = service_for(fleet, tmp_path, marks)
    try:
        result = await service.run_on_hosts("disk_usage", {}, ["all"], identity=LOCAL)
    finally:
        await service.pool.close()
    data = result.to_dict()
    assert [(g["hosts"], g["count"]) for g in data["groups"]] == [
        ("web-[001-004,006-007,009], app-[001-004]", 11),
        ("web-[005,010], db-001", 3)]
    assert [h["host"] for h in data["hosts"]] == ["web-008"]  # the one 95 % full
    assert " 95% /" in data["hosts"][0]["stdout"]
