"""What the MCP tools return: structured results with JSON Schemas clients can read."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from mcp.types import CallToolResult, TextContent
from pydantic import BaseModel, Field, create_model

from agent.core.fanout_run import FanoutResult
from agent.fanout.view import compact_json
from agent.hosts.query import HostPage, HostQuery, page_note
from agent.hosts.registry import HostView
from agent.output.results import CommandResult
from whitelist import Command

DATA = ("For a command with a parser (list_commands shows its fields): the whole stdout as "
        "data, a list of rows or one object; null when not parsed")
PARSE_NOTE = "Why a command with a parser has no data (could not parse, failed, cut)"


class ToolResult(BaseModel):
    """The outcome of one whitelisted command on one host."""

    host: str
    command: str = Field(description="Catalog command name")
    rendered: str = Field(description="The exact command line that ran on the host")
    stdout: str
    stderr: str
    exit_status: int | None = Field(description="Exit status; null if the command was killed")
    duration_ms: float
    truncated: bool = Field(description="True if output was cut: at the command's max_output, "
                            "or where the agent's disk budget for outputs was used up (the "
                            "note at the end of stdout says which)")
    timed_out: bool = False
    runs_as: str | None = Field(default=None, description="The user sudo ran the command as "
                                "(catalog `become`); null: the SSH login user")
    stdout_bytes: int | None = Field(default=None, description="Size of the whole stdout; "
                                     "stdout shows its head and tail when it is bigger")
    output_handle: str | None = Field(default=None, description="Read the output not shown "
                                      "with read_output(handle, offset)")
    redacted: dict[str, int] = Field(default_factory=dict, description="Secrets replaced in "
                                     "the whole output (shown or paged), by kind (e.g. AWS "
                                     "Access Key: 1)")
    audit_id: str | None = Field(default=None, description="This call's id in the agent's "
                                 "audit log; its output is recorded under it (`tailnet-agent "
                                 "audit show <id>`, and the chat's replay)")
    data: list[dict[str, Any]] | dict[str, Any] | None = Field(default=None, description=DATA)
    parse_note: str = Field(default="", description=PARSE_NOTE)

    @classmethod
    def of(cls, result: CommandResult) -> ToolResult:
        return cls.model_validate(result.to_dict())


class OutputPage(BaseModel):
    """A page of a command's output, read by handle."""

    handle: str
    stream: str
    offset: int
    next_offset: int | None = Field(description="Offset of the next page; null at the end")
    total_bytes: int
    text: str
    redacted: dict[str, int] = Field(description="Secrets replaced in this page, by kind")
    expires_in_s: float = Field(description="Seconds left before the handle expires")
    command: str = Field(description="The catalog command whose output this is")
    host: str


class Overview(BaseModel):
    host: str
    results: list[ToolResult]


class ParameterInfo(BaseModel):
    name: str
    type: str
    description: str
    required: bool
    default: str | int | None = None
    choices: list[str] | None = None


class CommandInfo(BaseModel):
    name: str
    category: str
    description: str
    destructive: bool
    parameters: list[ParameterInfo]
    fields: dict[str, str] | None = Field(default=None, description=(
        "A command with a parser: the fields of each row of its data, with their types "
        "(what run_on_hosts' filter can name)"))
    runs_as: str | None = Field(default=None, description="Runs elevated, as this user, through "
                                "sudo (on the default host); null: as the SSH login user")


class CommandList(BaseModel):
    commands: list[CommandInfo]
    categories: list[str]


class HostInfo(BaseModel):
    """One host; in list_hosts' answer a field at its default is left out."""

    name: str
    address: str
    user: str
    port: int = 22
    default: bool = False
    source: str = Field(default="file", description="Where the host comes from: file "
                        "(inventory/REMOTE_*) or tailnet")
    online: bool | None = Field(default=None, description="Online in the tailnet; null when "
                                "not known (a host from a file, or a tailnet node that has "
                                "just joined)")
    os: str = ""
    tags: list[str] = []
    last_seen: str | None = Field(default=None, description="When the tailnet last saw an "
                                  "offline host (ISO time), if its control server says")
    auth: str = Field(default="key", description="How the agent logs in: key, or "
                      "tailscale-ssh (keyless)")
    host_key_source: str = Field(default="known_hosts", description="Where the accepted SSH "
                                 "host key comes from: known_hosts, or tailnet (the keys the "
                                 "node publishes)")

    @classmethod
    def of(cls, view: HostView) -> HostInfo:
        return cls(name=view.name, address=view.address, user=view.user, port=view.port,
                   default=view.default, source=view.source, online=view.online, os=view.os,
                   tags=list(view.tags), last_seen=view.last_seen, auth=view.auth,
                   host_key_source=view.host_key_source)


class HostList(BaseModel):
    """One page of the hosts a caller may use (agent/hosts/query.py)."""

    hosts: list[HostInfo]
    total: int = Field(description="Hosts matching the filters, on all pages")
    next_cursor: str | None = Field(default=None, description="Give it as `cursor` (with "
                                    "the same filters) for the next page; null: last page")
    default_host: str | None = Field(default=None, description="The host a call without "
                                     "`host` runs on, if you may use it")
    online: dict[str, int] = Field(default_factory=dict, description="Matching hosts "
                                   "online, offline and not known (hosts from files)")
    tags: dict[str, int] = Field(default_factory=dict, description="Tailnet tags of the "
                                 "matching hosts and how many have each, most first")
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        """The page as JSON, each host without the fields at their default (about half of
        a host's bytes: a page of 50 stays under 8 KB)."""
        data = self.model_dump(mode="json", exclude={"hosts"})
        return {"hosts": [h.model_dump(mode="json", exclude_defaults=True) for h in self.hosts],
                **data}

    def call_result(self) -> CallToolResult:
        """list_hosts' answer: the page as compact JSON (compact_call_result)."""
        return compact_call_result(self.to_dict())

    @classmethod
    def of(cls, page: HostPage, query: HostQuery, next_page: Callable[[str], str]) -> HostList:
        return cls(hosts=[HostInfo.of(v) for v in page.hosts], total=page.total,
                   next_cursor=page.next_cursor, default_host=page.default, online=page.online,
                   tags=page.tags, note=page_note(page, query, next_page))


class Outcome(BaseModel):
    """What a host of a run_on_hosts call ended with, or a group of hosts that ended the
    same way (HostRun, HostGroup). Fields at their default are left out of the result."""

    status: str = Field(description="ok, failed (ran and failed, or could not be reached), "
                        "offline (the tailnet says so; nothing sent), refused (policy, "
                        "catalog binding, limits, no confirmation) or skipped (not run: the "
                        "canary or an earlier batch failed; `error` says which)")
    exit_status: int | None = None
    stdout: str = ""
    stderr: str = ""
    truncated: bool = False
    timed_out: bool = False
    data: list[dict[str, Any]] | dict[str, Any] | None = Field(default=None, description=(
        DATA + "; with a filter, the rows that matched"))
    rows_not_shown: int = Field(default=0, description="Rows of `data` left out for size; "
                                "rows_handle has them all")
    rows_handle: str | None = Field(default=None, description="read_output handle of the "
                                    "host's (or group's) whole line, rows included")
    note: str = Field(default="", description="Why there is no data (could not parse...) or "
                      "no verdict from the filter")
    matched: bool | None = Field(default=None, description="The filter's verdict; null: no "
                                 "filter, or undetermined (see note)")


class HostRun(Outcome):
    """One host of a run_on_hosts call, listed on its own: its outcome differs from every
    other host's."""

    host: str
    duration_ms: float = 0.0
    error: str = Field(default="", description="Why it was refused, offline, skipped or "
                       "failed")
    output_handle: str | None = Field(default=None, description="For read_output: the rest "
                                      "of a long output")
    batch: int | None = Field(default=None, description="The batch it ran in (canary and "
                              "rolling runs)")
    audit_id: str | None = Field(default=None, description="This host's call in the agent's "
                                 "audit log, and its recording")


class HostGroup(Outcome):
    """Hosts whose outcome was identical (status, exit status, whole output, error, data
    and notes; with a filter, the verdict and the rows that matched): one copy of it for
    all of them."""

    hosts: str = Field(description="The hosts, compacted: web-[001-180,182] is web-001 to "
                       "web-180 and web-182 (zero-padded like the first number)")
    count: int = Field(description="How many hosts")
    hosts_not_listed: int = Field(default=0, description="Hosts of the group `hosts` leaves "
                                  "out (a long list); read them with hosts_handle")
    hosts_handle: str | None = Field(default=None, description="read_output handle of the "
                                     "group: every host, each one's audit id, and the whole "
                                     "output")
    error: str = Field(default="", description="The reason, <host> standing for each host")
    output_handle: str | None = Field(default=None, description="For read_output: the rest "
                                      "of a long output (the first host's)")
    audit_id: str | None = Field(default=None, description="The call of audit_host (the "
                                 "group's first host, whose output stands for all) in the "
                                 "agent's audit log, and its recording; every host's call "
                                 "shares the result's fan-out id")
    audit_host: str | None = None


class FanoutSummary(BaseModel):
    total: int
    ok: int
    failed: int
    offline: int
    refused: int
    skipped: int = 0


class StrategyRun(BaseModel):
    name: str = Field(description="parallel, canary or rolling")
    batch_size: int | None = Field(default=None, description="rolling: hosts per batch "
                                   "(null: a tenth of the hosts)")
    max_failures: int | None = Field(default=None, description="rolling: failed hosts "
                                     "tolerated before the batches left are skipped")
    batches: int
    ran_batches: int
    stopped: str = Field(default="", description="Why the batches after ran_batches did not "
                         "run")


class Listing(BaseModel):
    handle: str = Field(description="read_output handle of the whole result")
    read: str = Field(description="How to read it: all of it, one host, or one group")


class NotShown(BaseModel):
    groups: int = Field(description="Groups left out of `groups` for size")
    alone: int = Field(description="Hosts left out of `hosts` (each its own outcome)")
    hosts: int = Field(description="Hosts left out in all (those groups' and those alone)")
    by_status: dict[str, int]


class FilterCounts(BaseModel):
    expression: str
    matched: int = Field(description="Hosts with a matching row: listed")
    not_matched: int = Field(description="Hosts without one: counted, not listed")
    undetermined: int = Field(description="Hosts that ran but whose output has no data or "
                              "could not be evaluated: listed, with a note")
    note: str = ""


class FanoutToolResult(BaseModel):
    """One command on many hosts: identical outcomes grouped (largest group first), every
    other host listed on its own, a summary; within TAILNET_AGENT_FANOUT_RESULT_BYTES,
    with what did not fit behind `listing`."""

    fanout: str = Field(description="The id every host's audit records share")
    command: str
    rendered: str = Field(description="The exact command line, the same on every host")
    strategy: StrategyRun
    summary: FanoutSummary = Field(description="Every host, listed or not")
    filter: FilterCounts | None = Field(default=None, description="With a filter: what it "
                                        "kept (groups and hosts list only those it did not "
                                        "exclude)")
    duration_ms: float
    groups: list[HostGroup] = Field(default_factory=list)
    hosts: list[HostRun] = Field(default_factory=list)
    listing: Listing | None = Field(default=None, description="Set when something was cut "
                                    "or left out for size: where all of it is")
    not_shown: NotShown | None = None


def compact_call_result(data: dict[str, Any]) -> CallToolResult:
    """A tool's answer given as data: compact JSON in the text (what most clients hand a
    model) and the same data as the structured content, so neither side costs twice the
    bytes of pretty-printed JSON. list_hosts and run_on_hosts answer this way."""
    return CallToolResult(content=[TextContent(type="text", text=compact_json(data))],
                          structured_content=data)


def fanout_call_result(result: FanoutResult) -> CallToolResult:
    """run_on_hosts' answer (FanoutToolResult), within the budget the result was presented
    with (agent.fanout.view measures exactly this JSON)."""
    return compact_call_result(result.to_dict())


class Pong(BaseModel):
    pong: bool
    version: str
    identity: str


class Confirm(BaseModel):
    confirm: bool = Field(description="Run this destructive command now?")


@functools.cache
def confirm_for(max_minutes: int) -> type[Confirm]:
    """The confirmation form, with a time-limited approval of up to `max_minutes` (the
    policy's bound) when the rule allows one."""
    if max_minutes <= 0:
        return Confirm
    return create_model(
        "ConfirmFor", __base__=Confirm,
        approve_minutes=(int, Field(0, ge=0, le=max_minutes, description=(
            "Also run identical calls (same command line, same host) without asking for "
            f"this many minutes; 0 means only this call (at most {max_minutes})"))),
    )


def command_info(command: Command, runs_as: str | None = None) -> CommandInfo:
    return CommandInfo(
        name=command.name,
        category=command.category,
        description=(f"{command.description} Runs as {runs_as} (sudo)." if runs_as
                     else command.description),
        runs_as=runs_as,
        destructive=command.destructive,
        fields=dict(command.parser.fields) if command.parser is not None else None,
        parameters=[
            ParameterInfo(
                name=p.name,
                type=str(p.type),
                description=p.description,
                required=p.required,
                default=p.default,
                choices=list(p.choices) or None,
            )
            for p in command.parameters
        ],
    )


