"""What the page shows for one tool call, built from the MCP tool result."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import mcp_types


@dataclass(frozen=True)
class FanoutRow:
    """One host of a fan-out (run_on_hosts), as its table shows it."""

    host: str
    status: str  # ok, failed, offline, refused
    exit_status: int | None = None
    duration_ms: float | None = None
    stdout: str = ""
    stderr: str = ""
    error: str = ""
    audit_id: str = ""  # its call in the audit log: the recording to replay
    data: str = ""  # its output as data (with a filter: the rows that matched), as JSON
    note: str = ""  # why there is no data, or no verdict from the filter


# Failures first: what needs a look comes before what went fine.
ROW_ORDER = {"failed": 0, "refused": 1, "offline": 2, "ok": 3}


@dataclass(frozen=True)
class ToolCard:
    tool: str
    host: str = ""
    command: str = ""  # catalog name
    rendered: str = ""  # the command line that ran
    exit_status: int | None = None
    duration_ms: float | None = None
    stdout: str = ""
    stderr: str = ""
    truncated: bool = False
    timed_out: bool = False
    error: str = ""  # the tool refused or failed; shown instead of output
    output: str = ""  # non-command tools (list_hosts, ...): their JSON, pretty-printed
    declined: bool = False  # a destructive command the person did not confirm
    stopped: bool = False  # the person stopped the turn while this call was pending
    fanout: tuple[FanoutRow, ...] = ()  # run_on_hosts: one row per host, failures first
    audit_id: str = ""  # the call's id in the audit log: its recording plays at replay_url

    @property
    def audit_ids(self) -> list[str]:
        """The calls this card shows, by their audit ids (one per host of a fan-out)."""
        return [i for i in (self.audit_id, *(row.audit_id for row in self.fanout)) if i]
    filtered: str = ""  # run_on_hosts with a filter: what it kept, in one line
    filter_expression: str = ""

    @property
    def ok(self) -> bool:
        if self.fanout:
            return all(row.status == "ok" for row in self.fanout)
        return not self.error and not self.timed_out and self.exit_status in (0, None)

    @property
    def title(self) -> str:
        """What ran, as a person names it: the catalog command, else the tool."""
        return self.command or self.tool

    @property
    def kind(self) -> str:
        """The card's look: ok, bad, declined or stopped."""
        if self.stopped:
            return "stopped"
        if self.declined:
            return "declined"
        return "ok" if self.ok else "bad"

    @property
    def status(self) -> str:
        if self.filtered:
            return self.filtered
        if self.fanout:
            ok = sum(row.status == "ok" for row in self.fanout)
            return f"{ok} of {len(self.fanout)} hosts ok"
        if self.stopped:
            return "stopped"
        if self.declined:
            return "declined"
        if self.error:
            return "error"
        if self.timed_out:
            return "timed out"
        if self.exit_status is None:
            return "done" if not self.rendered else "killed"
        return f"exit {self.exit_status}"


def _command_card(tool: str, data: dict[str, Any]) -> ToolCard:
    exit_status = data.get("exit_status")
    duration = data.get("duration_ms")
    return ToolCard(
        tool=tool,
        host=str(data.get("host", "")),
        command=str(data.get("command", "")),
        rendered=str(data.get("rendered", "")),
        exit_status=exit_status if isinstance(exit_status, int) else None,
        duration_ms=float(duration) if isinstance(duration, int | float) else None,
        stdout=str(data.get("stdout", "")),
        stderr=str(data.get("stderr", "")),
        truncated=bool(data.get("truncated", False)),
        timed_out=bool(data.get("timed_out", False)),
        audit_id=str(data.get("audit_id") or ""),
    )


def _fanout_card(tool: str, data: dict[str, Any]) -> ToolCard:
    rows = [
        FanoutRow(
            host=str(r.get("host", "")),
            status=str(r.get("status", "")),
            exit_status=r["exit_status"] if isinstance(r.get("exit_status"), int) else None,
            duration_ms=float(r["duration_ms"])
            if isinstance(r.get("duration_ms"), int | float) else None,
            stdout=str(r.get("stdout", "")),
            stderr=str(r.get("stderr", "")),
            error=str(r.get("error", "")),
            audit_id=str(r.get("audit_id") or ""),
            # The rows are shown when there is no text (a filter keeps only the rows).
            data=json.dumps(r["data"], indent=1, ensure_ascii=False)
            if r.get("data") is not None and not r.get("stdout") else "",
            note=str(r.get("note", "")),
        )
        for r in data["hosts"] if isinstance(r, dict)
    ]
    rows.sort(key=lambda row: (ROW_ORDER.get(row.status, 0), row.host))
    duration = data.get("duration_ms")
    return ToolCard(tool=tool, command=str(data.get("command", "")),
                    rendered=str(data.get("rendered", "")), fanout=tuple(rows),
                    duration_ms=float(duration) if isinstance(duration, int | float) else None,
                    filtered=_filtered(data),
                    filter_expression=str((data.get("filter") or {}).get("expression", "")))


def _filtered(data: dict[str, Any]) -> str:
    """A filtered fan-out's badge: how many hosts matched, of how many."""
    verdicts = data.get("filter")
    total = data.get("summary", {}).get("total") if isinstance(data.get("summary"), dict) else None
    if not isinstance(verdicts, dict) or not isinstance(total, int):
        return ""
    return f"{verdicts.get('matched', 0)} of {total} hosts match"


def _is_fanout_result(data: Any) -> bool:
    return isinstance(data, dict) and "fanout" in data and isinstance(data.get("hosts"), list)


def _is_command_result(data: Any) -> bool:
    return isinstance(data, dict) and "rendered" in data and "stdout" in data


def result_text(result: mcp_types.CallToolResult) -> str:
    return "\n".join(
        block.text for block in result.content if isinstance(block, mcp_types.TextContent)
    )


def cards_for(
    tool: str, result: mcp_types.CallToolResult, *, host: str = "", elapsed_ms: float | None = None
) -> list[ToolCard]:
    """One card per command that ran (system_overview runs several), or one for the tool."""
    data = result.structured_content
    if result.is_error:
        return [ToolCard(tool=tool, host=host, duration_ms=elapsed_ms,
                         error=result_text(result) or "the tool failed without a message")]
    if _is_fanout_result(data):
        return [_fanout_card(tool, data)]
    if _is_command_result(data):
        return [_command_card(tool, data)]
    if isinstance(data, dict) and isinstance(data.get("results"), list):
        results = [r for r in data["results"] if _is_command_result(r)]
        if results:
            return [_command_card(tool, r) for r in results]
    if data is not None:
        output = json.dumps(data, indent=2, ensure_ascii=False, default=str)
    else:
        output = result_text(result)
    return [ToolCard(tool=tool, host=host, duration_ms=elapsed_ms, output=output)]


def declined_card(tool: str, host: str, rendered: str, *, command: str = "",
                  stopped: bool = False) -> ToolCard:
    error = ("You stopped the turn before confirming, so it did not run." if stopped
             else "You declined this command, so it did not run.")
    return ToolCard(tool=tool, host=host, command=command, rendered=rendered,
                    declined=not stopped, stopped=stopped, error=error)


def line_count(text: str) -> int:
    return text.count("\n") + (0 if text.endswith("\n") or not text else 1)
