"""One fan-out as a client sees it: `run_on_hosts` on every host, through the MCP SDK client.

Measured per call: the wall time, the time to the first progress notification (the first
host's result), the result's size (its text content, what a model is given, and its
structured content), the hosts' distinct outputs and how many copies of them the text
holds, and the CPU time the agent process spent on it. The distinct outputs are read
from the result's shape, here, once: its `groups` (hosts with identical outcomes, one
output each), the hosts listed on their own (`hosts`), and what it left out for size
(`not_shown`: each left-out group one outcome, each left-out host its own).
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Sequence

from mcp import Client
from mcp.shared.exceptions import MCPError

from tests.bench.bench_servers import cpu_seconds

COMMANDS = ("hostname", "disk_usage")
# "Which hosts have a disk over 90 % full?": disk_usage on all hosts with this filter.
QUESTION = "use_percent >= `90`"


@dataclasses.dataclass(frozen=True)
class Sample:
    wall: float  # seconds
    first: float | None  # seconds to the first progress notification
    text_bytes: int  # the result's text content (what a model is given)
    structured_bytes: int  # its structuredContent, compact JSON
    ok: int
    total: int
    distinct: int  # distinct outcomes among the hosts (groups + hosts on their own)
    copies: int  # copies of the outputs shown in the text (grouped: one each)
    cpu: float  # the agent process's CPU seconds during the call
    error: str = ""
    groups: int = 0  # groups of hosts with identical outcomes in the result
    listed: int = 0  # hosts the result lists (with a filter, those it kept)


def copies(text: str, outputs: Sequence[str]) -> int:
    """How many times the hosts' distinct outputs appear in the result text (raw or as
    JSON strings): N for a list of hosts, one per distinct output once grouped."""
    total = 0
    for out in outputs:
        if out:
            escaped = json.dumps(out)[1:-1]
            total += max(text.count(out), text.count(escaped))
    return total


async def fanout(client: Client, command: str, agent_pid: int,
                 row_filter: str | None = None) -> Sample:
    """`run_on_hosts command` on all hosts (with `row_filter` as its filter); `agent_pid` is
    the process whose CPU counts."""
    started = time.perf_counter()
    first: list[float] = []

    async def progress(progress: float, total: float | None, message: str | None) -> None:
        if not first:
            first.append(time.perf_counter() - started)

    cpu_before = cpu_seconds(agent_pid)
    try:
        arguments = {"command": command, "hosts": "all"}
        if row_filter is not None:
            arguments["filter"] = row_filter
        result = await client.call_tool("run_on_hosts", arguments, progress_callback=progress)
    except MCPError as exc:  # the call failed as a whole: shown in the table, not fatal
        return Sample(time.perf_counter() - started, first[0] if first else None, 0, 0, 0, 0,
                      0, 0, cpu_seconds(agent_pid) - cpu_before, error=str(exc)[:300])
    wall = time.perf_counter() - started
    cpu = cpu_seconds(agent_pid) - cpu_before
    text = "".join(c.text for c in result.content if c.type == "text")
    if result.is_error or not result.structured_content:
        return Sample(wall, first[0] if first else None, len(text.encode()), 0, 0, 0, 0, 0,
                      cpu, error=text[:300])
    data = result.structured_content
    entries = (data.get("groups") or []) + (data.get("hosts") or [])
    left = data.get("not_shown") or {}
    outputs = {e.get("stdout", "") for e in entries}
    errors = sorted({str(e.get("error") or e.get("stderr") or e.get("status"))
                     for e in entries if e.get("status") != "ok"})
    return Sample(
        wall, first[0] if first else None, len(text.encode()),
        len(json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode()),
        int(data["summary"]["ok"]), int(data["summary"]["total"]),
        len(entries) + int(left.get("groups", 0)) + int(left.get("alone", 0)),
        copies(text, sorted(outputs)), cpu, error="; ".join(errors)[:300],
        groups=len(data.get("groups") or []) + int(left.get("groups", 0)),
        listed=sum(int(g.get("count", 1)) for g in data.get("groups") or [])
        + len(data.get("hosts") or []) + int(left.get("hosts", 0)))
