"""Item 1: the audit trail cannot be flooded away, and every refusal path is on it."""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

from agent.access.identity import local_user_identity
from agent.audit.reader import read_calls, read_records
from agent.audit.shape import MAX_RECORD_BYTES
from agent.audit.writer import LIMITED_WINDOW
from agent.hosts.inventory import HostConfig
from tests.support.agents import running_agent, settings_for
from tests.support.peers import (
    ALICE,
    MALLORY,
    by_address,
    http_from,
    mcp_from,
    open_session,
    session_headers,
)
from tests.support.strict_json import strict

OPERATOR = local_user_identity("local")
PEERS = {"127.0.0.1": OPERATOR, "127.0.0.2": MALLORY, "127.0.0.3": ALICE}
# About 880 KB of JSON, within the 1 MiB body limit.
HUGE = {f"k{i}": ["x" * 2200] * 4 for i in range(100)}



def audit_lines(directory: Path) -> list[str]:
    return [line for f in sorted(directory.glob("audit.jsonl*"))
            for line in f.read_text().splitlines()]


async def test_a_flood_of_huge_refused_calls_keeps_the_record_of_a_real_one(
    ssh_host: HostConfig, tmp_path: Path
) -> None:
    # Small files and budget, so that rotation would show within this test.
    settings = settings_for(ssh_host, audit_log=tmp_path / "audit.jsonl",
                            audit_max_bytes=200_000, audit_budget=1_000_000,
                            rate_per_minute=0)
    async with running_agent(settings, resolver=by_address(PEERS)) as agent:
        async with mcp_from(agent.url, "127.0.0.1") as operator:
            real = await operator.call_tool("execute_command", {"command": "hostname"})
            assert not real.is_error
        answers: Counter[str] = Counter()
        async with mcp_from(agent.url, "127.0.0.2") as mallory:
            for _ in range(150):
                refused = await mallory.call_tool(
                    "execute_command", {"command": "hostname", "parameters": HUGE})
                assert refused.is_error
                text = refused.content[0].text  # type: ignore[union-attr]
                answers["rate limit" if "rate limit" in text else "refused"] += 1
        # The count of the last window is written when the window ends (10 s): now, here.
        agent.service.audit.flush_limited(now=time.monotonic() + LIMITED_WINDOW)
    # Refusals cost a token: past the burst (60), Mallory is rate-limited.
    assert answers == {"refused": 60, "rate limit": 90}, answers
    lines = audit_lines(tmp_path)
    total = sum(f.stat().st_size for f in tmp_path.glob("audit.jsonl*"))
    assert total < 400_000, total  # 150 x 880 KB sent; about 130 MB would be raw
    assert all(len(line) <= MAX_RECORD_BYTES + 200 for line in lines)
    records = [strict(line) for line in lines]
    assert not any(r.get("event") == "archive-removed" for r in records)
    ran = [c for c in read_calls(tmp_path / "audit.jsonl") if c.merged()["outcome"] == "ran"]
    assert len(ran) == 1 and ran[0].start["identity"] == OPERATOR.principal
    outcomes = Counter(c.merged()["outcome"] for c in read_calls(tmp_path / "audit.jsonl"))
    # The first rate-limited call of each 10 s window is recorded as a call, the others
    # of the window are counted in one record: all 90 are accounted for.
    counted = [r for r in records if r.get("event") == "limited"]
    assert {r["identity"] for r in counted} == {"tag:mallory"}
    assert outcomes["ran"] == 1 and outcomes["refused"] == 60
    assert outcomes["limited"] + sum(r["calls"] for r in counted) == 90, (outcomes, counted)


async def test_every_refusal_path_is_audited_and_charged(
    ssh_host: HostConfig, tmp_path: Path
) -> None:
    settings = settings_for(ssh_host, audit_log=tmp_path / "audit.jsonl", rate_burst=40,
                            rate_per_minute=0)
    async with running_agent(settings, resolver=by_address(PEERS)) as agent:
        async with mcp_from(agent.url, "127.0.0.3") as alice:
            invalid = await alice.call_tool("check_service", {"unit": 12345})
            unknown_tool = await alice.call_tool("no_such_tool", {"x": 1})
            extra = await alice.call_tool("check_path_size", {"path": {"x" * 100_000: 1}})
        async with http_from("127.0.0.3", base_url=agent.base, timeout=30) as http:
            # The chat page's palette, with a value its command refuses.
            palette = await http.post("/chat/run", data={"command": "service_status",
                                                          "p.unit": "-bad unit"},
                                      headers={"Sec-Fetch-Site": "same-origin"})
            # NaN is not JSON, but Python's parser takes it: refused, and the log stays JSON.
            session = await open_session(http, agent.url)
            nan = await http.post(agent.url, headers=session_headers(session), content=(
                '{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":'
                '"execute_command","arguments":{"command":"largest_files","parameters":'
                '{"count":NaN,"path":Infinity}}}}'))
            # Volume: schema-invalid calls from one caller exhaust its rate like any other.
            limited = 0
            for n in range(60):
                answer = await http.post(agent.url, headers=session_headers(session), json={
                    "jsonrpc": "2.0", "id": 100 + n, "method": "tools/call",
                    "params": {"name": "check_memory", "arguments": {"host": n}}})
                limited += "rate limit" in answer.text
    for result in (invalid, unknown_tool, extra):
        text = result.content[0].text  # type: ignore[union-attr]
        assert result.is_error and "pydantic" not in text and len(text) < 600, text
    assert "invalid arguments for tool 'check_service'" in invalid.content[0].text  # type: ignore[union-attr]
    assert "unknown tool 'no_such_tool'" in unknown_tool.content[0].text  # type: ignore[union-attr]
    assert "must not start with &#39;-&#39;" in palette.text
    assert "NaN and Infinity are not allowed" in nan.text
    assert limited > 0
    records = [strict(line) for line in audit_lines(tmp_path)]
    calls = {c.call: c.merged() for c in read_calls(tmp_path / "audit.jsonl")}
    by_tool = Counter((c.get("tool"), c.get("command"), c["outcome"]) for c in calls.values())
    assert by_tool[("check_service", None, "invalid")] == 1, by_tool
    assert by_tool[("no_such_tool", None, "invalid")] == 1
    assert by_tool[("check_path_size", None, "invalid")] == 1
    assert by_tool[("palette", "service_status", "invalid")] == 1
    nan_call = next(c for c in calls.values() if c.get("command") == "largest_files")
    assert nan_call["outcome"] == "invalid" and "NaN" in nan_call["error"]
    assert nan_call["parameters"] == {"count": "nan", "path": "inf"}
    # Every call has exactly one start and one end.
    events = Counter((r["call"], r["event"]) for r in records if "call" in r)
    assert all(events[(call, "start")] == 1 and events[(call, "end")] == 1 for call in calls)
    assert all(r["identity"] == ALICE.principal for r in read_records(tmp_path / "audit.jsonl")
               if r.get("event") == "start")
