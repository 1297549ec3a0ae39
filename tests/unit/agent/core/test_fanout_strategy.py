"""Canary and rolling runs: which hosts run, in what order, and when a run stops.

The service is real; its Runner records what would have run on each host and answers
what each host is scripted to answer (tests/support/recording.py). Real hosts are
tests/e2e/ssh/test_fanout_strategies.py.
"""

from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path
from typing import Any

import mcp
import pytest
from mcp.types import ElicitResult

from agent.audit.reader import read_records
from agent.core.service import AgentService
from agent.errors import ConfigError
from agent.fanout.strategy import Strategy, StrategyRequest
from agent.mcp.tools import build_mcp_server
from tests.support.recording import ALICE, PATH, Answer, Person, fleet_service, ran

NAMES = [f"web-{i:02d}" for i in range(1, 16)]


def failing(*hosts: str) -> dict[str, Answer]:
    return {h: (("", "no\n", 1) if h in hosts else ("done\n", "", 0)) for h in NAMES}


def service_with(tmp_path: Path, answers: dict[str, Answer]) -> AgentService:
    return fleet_service(tmp_path, NAMES, lambda host: answers[host])


def audit(tmp_path: Path) -> tuple[dict[str, dict[str, object]], dict[str, dict[str, object]]]:
    """(start record, end record) of each host's call, by host."""
    records = list(read_records(tmp_path / "audit.jsonl"))
    starts = {r["call"]: r for r in records if r["event"] == "start" and r.get("fanout")}
    ends = {starts[r["call"]]["host"]: r for r in records
            if r["event"] == "end" and r["call"] in starts}
    return {r["host"]: r for r in starts.values()}, ends


async def touch(service: AgentService, strategy: StrategyRequest | None = None,
                messages: list[str] | None = None) -> object:
    async def progress(done: int, total: int, message: str) -> None:
        if messages is not None:
            messages.append(f"{done}/{total} {message}")

    return await service.run_on_hosts("touch_self", {"path": PATH}, ["all"], identity=ALICE,
                                      confirm=Person(), strategy=strategy, progress=progress)


async def test_a_destructive_fan_out_is_a_canary_run_and_stops_when_the_canary_fails(
    tmp_path: Path,
) -> None:
    service = service_with(tmp_path, failing("web-01"))
    plan = service.plan_fanout("touch_self", {"path": PATH}, ["all"], ALICE)
    assert plan.strategy.name == "canary"
    assert ("on 15 host(s): web-[01-15]? Strategy: canary: web-01 first, then the other 14 "
            "only if it succeeded.") in plan.question
    messages: list[str] = []
    result = await touch(service, messages=messages)
    assert ran(service) == [("web-01", "touch_self", None)]  # nothing ran anywhere else
    assert result.summary["skipped"] == 14 and result.summary["failed"] == 1
    skipped = [o for o in result.hosts if o.status == "skipped"]
    assert {o.error for o in skipped} == {
        "not run: the canary host web-01 failed with exit status 1"}
    assert messages == ["1/15 canary: web-01: failed",
                        "15/15 14 host(s) not run: the canary host web-01 failed with exit "
                        "status 1"]
    starts, ends = audit(tmp_path)
    assert set(starts) == set(NAMES)  # every host recorded, with the fan-out's strategy
    assert {r["strategy"] for r in starts.values()} == {"canary"}
    assert starts["web-01"]["batch"] == 1 and starts["web-02"]["batch"] == 2
    assert len({r["fanout"] for r in starts.values()}) == 1
    assert ends["web-01"]["outcome"] == "ran"
    assert Counter(r["outcome"] for h, r in ends.items() if h != "web-01") == {"not-run": 14}
    assert "canary host web-01 failed" in str(ends["web-02"]["error"])
    data = result.to_dict()  # type: ignore[attr-defined]
    assert data["strategy"]["stopped"] == "the canary host web-01 failed with exit status 1"
    assert data["groups"][0]["hosts"] == "web-[02-15]" and data["groups"][0]["status"] == (
        "skipped")


async def test_a_canary_that_succeeds_runs_first_then_every_other_host(
    tmp_path: Path,
) -> None:
    service = service_with(tmp_path, failing("web-09"))
    messages: list[str] = []
    result = await touch(service, messages=messages)
    assert ran(service)[0][0] == "web-01" and len(ran(service)) == 15
    assert messages[0] == "1/15 canary: web-01: ok"
    assert all(m.split(" ", 1)[1].startswith("after the canary: ") for m in messages[1:])
    # A failure after the canary stops nothing: those hosts were running already.
    assert result.summary["ok"] == 14 and result.summary["failed"] == 1


async def test_a_rolling_run_stops_once_more_than_max_failures_hosts_failed(
    tmp_path: Path,
) -> None:
    """Batches of 3, one failure tolerated: web-05 fails in batch 2 (1, tolerated), web-10
    in batch 4 (2, more than 1): batch 5 is not run."""
    service = service_with(tmp_path, failing("web-05", "web-10"))
    messages: list[str] = []
    result = await touch(service, StrategyRequest("rolling", 3, 1), messages)
    assert [h for h, _, _ in ran(service)] == NAMES[:12]
    assert [o.host for o in result.hosts if o.status == "skipped"] == NAMES[12:]
    # Batches run one after the other, in order.
    batches = [int(m.split(" batch ")[1].split("/")[0]) for m in messages if "/5: " in m]
    assert len(batches) == 12 and batches == sorted(batches) and batches[-1] == 4
    assert messages[-1] == ("15/15 3 host(s) not run: 2 host(s) failed by batch 4 of 5, more "
                            "than the 1 allowed (max_failures); in it web-10 failed with exit "
                            "status 1")
    starts, ends = audit(tmp_path)
    assert {starts[h]["batch"] for h in NAMES[12:]} == {5}
    assert {ends[h]["outcome"] for h in NAMES[12:]} == {"not-run"}
    assert "2 host(s) failed by batch 4 of 5, more than the 1 allowed" in str(
        ends["web-15"]["error"])


async def test_a_rolling_run_within_its_failures_runs_every_batch(tmp_path: Path) -> None:
    service = service_with(tmp_path, failing("web-05", "web-10"))
    result = await touch(service, StrategyRequest("rolling", 4, 2))
    assert len(ran(service)) == 15 and result.summary["failed"] == 2
    assert result.batches == 4 and result.ran_batches == 4 and not result.stopped


async def test_parallel_runs_everything_even_on_failures(tmp_path: Path) -> None:
    service = service_with(tmp_path, failing("web-01", "web-02"))
    result = await touch(service, StrategyRequest("parallel"))
    assert len(ran(service)) == 15 and result.summary["failed"] == 2


async def test_hosts_that_cannot_run_are_answered_first_and_never_stop_a_run(
    tmp_path: Path,
) -> None:
    """A host the catalog binding refuses is in no batch: it neither is the canary nor
    counts as its failure."""
    service = fleet_service(tmp_path, ["web1", "web2", "web3"],
                            lambda host: ("done\n", "", 0))
    result = await service.run_on_hosts("touch_web2", {"path": PATH}, ["web1", "web2", "web3"],
                                        identity=ALICE, confirm=Person())
    assert ran(service) == [("web2", "touch_web2", None)]
    assert [o.status for o in result.hosts] == ["refused", "ok", "refused"]
    assert not result.stopped


def test_the_default_strategy_and_what_a_caller_may_ask_for() -> None:
    assert StrategyRequest().resolve(destructive=False).name == "parallel"
    assert StrategyRequest().resolve(destructive=True).name == "canary"
    assert StrategyRequest("parallel").resolve(destructive=True).name == "parallel"
    assert StrategyRequest(batch_size=5).resolve(destructive=False) == Strategy(
        "rolling", 5, 0)
    for wrong, message in ((StrategyRequest("canary", batch_size=2), "apply to rolling"),
                           (StrategyRequest("fast"), "unknown strategy 'fast'"),
                           (StrategyRequest("rolling", 0), "at least 1"),
                           (StrategyRequest("rolling", 2, -1), "0 or more")):
        with pytest.raises(ConfigError, match=message):
            wrong.resolve(destructive=False)
    rolling = Strategy("rolling")
    assert [len(b) for b in rolling.batches(list(range(25)))] == [3] * 8 + [1]
    assert [len(b) for b in Strategy("canary").batches(list(range(5)))] == [1, 4]
    assert Strategy("canary").batches([1]) == [[1]]
    assert Strategy("parallel").batches([]) == []


async def test_a_strategy_that_means_nothing_is_refused_before_anything_runs(
    tmp_path: Path,
) -> None:
    service = service_with(tmp_path, failing())
    with pytest.raises(ConfigError, match="apply to rolling runs"):
        await touch(service, StrategyRequest("canary", 3))
    assert ran(service) == []


async def test_over_mcp_the_confirmation_names_hosts_strategy_and_progress_the_batch(
    tmp_path: Path,
) -> None:
    service = service_with(tmp_path, failing())
    asked: list[str] = []
    answer = "decline"

    async def elicit(context: Any, params: Any) -> ElicitResult:
        asked.append(params.message)
        if answer == "decline":
            return ElicitResult(action="decline")
        return ElicitResult(action="accept", content={"confirm": True})

    progress: list[str] = []

    async def on_progress(done: float, total: float | None, message: str | None) -> None:
        progress.append(message or "")

    arguments = {"command": "touch_self", "parameters": {"path": PATH}, "hosts": "all",
                 "strategy": "rolling", "batch_size": 5}
    server = build_mcp_server(service, stdio_caller=ALICE)
    async with mcp.Client(server, elicitation_callback=elicit) as client:
        declined = await client.call_tool("run_on_hosts", arguments)
        ran_when_declined = list(ran(service))
        answer = "accept"
        accepted = await client.call_tool("run_on_hosts", arguments,
                                          progress_callback=on_progress)
        wrong = await client.call_tool("run_on_hosts", {**arguments, "strategy": "canary"})
    # Declined: nothing runs; the first batch is refused, and the rest never asked.
    assert not declined.is_error and declined.structured_content is not None
    assert ran_when_declined == [] and declined.structured_content["summary"]["refused"] == 5
    assert "web-01 was refused: 'touch_self' was not confirmed" in (
        declined.structured_content["strategy"]["stopped"])
    assert asked[0] == (
        f"Run destructive command 'touch_self' on 15 host(s): web-[01-15]? Strategy: "
        f"rolling: 3 batches of up to 5 host(s), one after the other, stopping once more "
        f"than 0 host(s) failed. The command line on each: touch -- {PATH}")
    assert not accepted.is_error and len(ran(service)) == 15
    assert accepted.structured_content is not None
    assert accepted.structured_content["strategy"] == {
        "name": "rolling", "batch_size": 5, "max_failures": 0, "batches": 3, "ran_batches": 3}
    assert progress[0].startswith("batch 1/3: web-0") and progress[-1].startswith("batch 3/3")
    assert wrong.is_error and "apply to rolling runs" in str(wrong.content)


async def test_a_fan_out_is_one_line_on_the_operators_terminal(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Its hosts' lines are DEBUG (each host's call is in the audit log); the fan-out's own
    line counts the outcomes and names the hosts that did not succeed, as a warning. A
    single call keeps its INFO line."""
    answers = {h: (("", "no\n", 1) if h in ("web-03", "web-04", "web-05") else ("up\n", "", 0))
               for h in NAMES}
    service = service_with(tmp_path, answers)
    with caplog.at_level(logging.INFO):
        result = await service.run_on_hosts("uptime", {}, ["all"], identity=ALICE)
        fanout = [r for r in caplog.records if r.name == "tailnet_agent.calls"]
        assert [r.levelno for r in caplog.records] == [logging.WARNING]
        assert len(fanout) == 1
        message = fanout[0].getMessage()
        assert f"uptime on 15 host(s) ({result.fanout}, parallel): 12 ok, 3 failed" in message
        assert message.endswith("not ok: web-[03-05]")
        assert getattr(fanout[0], "fanout", None) == result.fanout
        caplog.clear()
        await service.run_on_hosts("uptime", {}, ["web-01", "web-02"], identity=ALICE)
        assert [(r.levelno, "2 ok" in r.getMessage()) for r in caplog.records] == [
            (logging.INFO, True)]
        caplog.clear()
        await service.run("uptime", {}, host="web-01", identity=ALICE)
        assert [r.levelno for r in caplog.records] == [logging.INFO, logging.INFO]
    with caplog.at_level(logging.DEBUG, logger="tailnet_agent.calls"):
        caplog.clear()
        await service.run_on_hosts("uptime", {}, ["web-01", "web-03"], identity=ALICE)
        hosts = [r.getMessage() for r in caplog.records if r.levelno == logging.DEBUG]
        assert any("uptime on web-01 exited 0" in m for m in hosts)
        assert any("uptime on web-03 exited 1" in m for m in hosts)
