"""What the page shows for one tool call, built from the MCP tool result."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import mcp_types


@dataclass(frozen=True)
class FanoutRow:
    """One row of a fan-out's table (run_on_hosts): a group of hosts that ended the same
    way (their names compacted, `web-[001-180]`), or a host on its own."""

    host: str  # the host, or the group's hosts in the compact notation
    status: str  # ok, failed, offline, refused, skipped
    exit_status: int | None = None
    duration_ms: float | None = None
    stdout: str = ""
    stderr: str = ""
    error: str = ""
    count: int = 1  # hosts in the row
    hosts_not_listed: int = 0  # a group's hosts its `host` leaves out
    # Its call in the audit log: the recording to replay. A group's is its first host's
    # (`audit_host`), whose output stands for every host's in the row.
    audit_id: str = ""
    audit_host: str = ""
    data: str = ""  # its output as data (with a filter: the rows that matched), as JSON
    rows_not_shown: int = 0  # rows of its data the result left out for size
    note: str = ""  # why there is no data, or no verdict from the filter

    @property
    def group(self) -> bool:
        return self.count > 1

    @property
    def host_parts(self) -> list[str]:
        """The compact host list's parts, one per prefix (`web-[001-180]`, `db-1`)."""
        return self.host.split(", ")


# Failures first: what needs a look comes before what went fine.
ROW_ORDER = {"failed": 0, "refused": 1, "offline": 2, "skipped": 3, "ok": 4}


@dataclass(frozen=True)
class FanoutFacts:
    """What a fan-out's card says besides its rows."""

    total: int  # hosts in the fan-out
    ok: int
    strategy: str = ""  # e.g. "canary; stopped: the canary host web-1 failed ..."
    not_shown: int = 0  # hosts the result left out for size
    listing: str = ""  # the handle of the whole result, when something was left out or cut
    filtered: str = ""  # with a filter: what it kept, in one line ("3 of 300 hosts match")
    filter_expression: str = ""


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
    fanout: tuple[FanoutRow, ...] = ()  # run_on_hosts: a row per group or host, failures first
    facts: FanoutFacts | None = None  # run_on_hosts: the summary, strategy, what is left out
    audit_id: str = ""  # the call's id in the audit log: its recording plays at replay_url

    @property
    def audit_ids(self) -> list[str]:
        """The calls this card shows, by their audit ids (one per host of a fan-out listed
        on its own, a group's first host's)."""
        return [i for i in (self.audit_id, *(row.audit_id for row in self.fanout)) if i]

    @property
    def ok(self) -> bool:
        if self.facts is not None:
            return self.facts.ok == self.facts.total
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
        if self.facts is not None:
            return self.facts.filtered or f"{self.facts.ok} of {self.facts.total} hosts ok"
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


def _mapping(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _number(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _fanout_row(data: dict[str, Any], group: bool) -> FanoutRow:
    exit_status, duration = data.get("exit_status"), data.get("duration_ms")
    return FanoutRow(
        host=str(data.get("hosts" if group else "host", "")),
        status=str(data.get("status", "")),
        exit_status=exit_status if isinstance(exit_status, int) else None,
        duration_ms=float(duration) if isinstance(duration, int | float) else None,
        stdout=str(data.get("stdout", "")),
        stderr=str(data.get("stderr", "")),
        error=str(data.get("error", "")),
        count=max(1, _number(data.get("count"))) if group else 1,
        hosts_not_listed=_number(data.get("hosts_not_listed")),
        audit_id=str(data.get("audit_id") or ""),
        audit_host=str(data.get("audit_host") or ("" if group else data.get("host", ""))),
        # The rows are shown when there is no text (a filter keeps only the rows).
        data=json.dumps(data["data"], indent=1, ensure_ascii=False)
        if data.get("data") is not None and not data.get("stdout") else "",
        rows_not_shown=_number(data.get("rows_not_shown")) if not data.get("stdout") else 0,
        note=str(data.get("note", "")),
    )


def _fanout_card(tool: str, data: dict[str, Any]) -> ToolCard:
    groups = [_fanout_row(g, True) for g in data.get("groups") or [] if isinstance(g, dict)]
    alone = [_fanout_row(h, False) for h in data["hosts"] if isinstance(h, dict)]
    # The result's order (groups largest first, then hosts on their own), failures first.
    rows = sorted(groups + alone, key=lambda row: ROW_ORDER.get(row.status, 0))
    summary, strategy, not_shown, listing = (
        _mapping(data.get(k)) for k in ("summary", "strategy", "not_shown", "listing"))
    how = str(strategy.get("name", ""))
    if strategy.get("stopped"):
        how += f"; stopped: {strategy['stopped']}"
    total = _number(summary.get("total")) or sum(row.count for row in rows)
    facts = FanoutFacts(total=total, ok=_number(summary.get("ok")), strategy=how,
                        not_shown=_number(not_shown.get("hosts")),
                        listing=str(listing.get("handle", "")),
                        filtered=_filtered(data, total),
                        filter_expression=str(_mapping(data.get("filter")).get("expression",
                                                                              "")))
    duration = data.get("duration_ms")
    return ToolCard(tool=tool, command=str(data.get("command", "")),
                    rendered=str(data.get("rendered", "")), fanout=tuple(rows), facts=facts,
                    duration_ms=float(duration) if isinstance(duration, int | float) else None)


def _filtered(data: dict[str, Any], total: int) -> str:
    """A filtered fan-out's badge: how many hosts matched, of how many."""
    verdicts = data.get("filter")
    if not isinstance(verdicts, dict):
        return ""
    return f"{_number(verdicts.get('matched'))} of {total} hosts match"


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

