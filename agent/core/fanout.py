"""One catalog command, with one set of parameters, on many hosts at once.

Each host's call is prepared like a single call (`plan`: agent.core.prepare decides it)
and goes through `AgentService.execute`: the audit log gets its start and end records
(all sharing the fan-out's id), the rate and per-host limits apply, an offline host is
answered at once. Hosts run concurrently, at most `fanout_concurrency` at a time (a
setting), and one host's failure never touches the others: every host ends as ok,
failed, offline or refused.

A destructive command is confirmed once for the whole fan-out: the plan's `question`
names the hosts where the caller's yes is needed and the exact command line, and the
answer goes with exactly those prepared calls.

A cancelled fan-out cancels every host's call and returns only once each has ended: its
remote command stopped, its slot free, its end record written (`together`; asyncio.gather
would return at the first host's end and leave the others stopping behind it).
"""

from __future__ import annotations

import asyncio
import dataclasses
import fnmatch
import secrets
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from whitelist import WhitelistError

from .errors import CallRefused, ConfigError, HostError, HostOffline, UnknownHost
from .identity import Identity
from .prepare import Preparation, PreparedCall, Unprepared
from .row_filter import FilterError, FilterTally, RowFilter, Unevaluable, compile_filter

if TYPE_CHECKING:
    from .consent import Confirm
    from .service import AgentService
    from .visibility import CallerView

T = TypeVar("T")
Status = Literal["ok", "failed", "offline", "refused"]
STATUSES: tuple[Status, ...] = ("ok", "failed", "offline", "refused")
ALL = "all"
TOOL = "run_on_hosts"  # the MCP tool (and the chat's) that runs a fan-out
# Exit statuses of a program that is missing or not executable on the host.
NOT_RUNNABLE = (126, 127)


@dataclass(frozen=True)
class HostOutcome:
    host: str
    status: Status
    exit_status: int | None = None
    stdout: str = ""
    stderr: str = ""
    duration_ms: float = 0.0
    truncated: bool = False
    timed_out: bool = False
    error: str = ""  # why it was refused, offline or failed without output
    output_handle: str | None = None  # read_output pages what stdout/stderr do not show
    audit_id: str | None = None  # the host's call in the audit log (its recording)
    data: Any = None  # its output as data (a command with a parser); with a filter, the
    #                   rows that matched
    note: str = ""  # why a command with a parser has no data, or the filter no verdict
    matched: bool | None = None  # the filter's verdict (None: no filter, or undetermined)

    def to_dict(self) -> dict[str, Any]:
        return {"host": self.host, "status": self.status, "exit_status": self.exit_status,
                "stdout": self.stdout, "stderr": self.stderr,
                "duration_ms": round(self.duration_ms, 1), "truncated": self.truncated,
                "timed_out": self.timed_out, "error": self.error,
                "output_handle": self.output_handle, "audit_id": self.audit_id,
                "data": self.data, "note": self.note, "matched": self.matched}

    def filtered(self, row_filter: RowFilter, tally: FilterTally) -> HostOutcome:
        """This host through the filter: matched (showing the rows that matched, not its
        text), not matched, or undetermined (no data, or rows the filter could not
        evaluate: the note says why). A host that failed, is offline or was refused is
        left as it is."""
        if self.status != "ok" or self.data is None:
            return self
        try:
            rows = row_filter.matching(self.data, tally)
        except Unevaluable as exc:
            return dataclasses.replace(self, note=str(exc))
        return dataclasses.replace(self, data=rows, stdout="", matched=bool(rows))


@dataclass(frozen=True)
class FanoutPlan:
    """A run_on_hosts call prepared: each host's prepared call, and what its one
    confirmation asks. A call refused as a whole (an unknown command, invalid arguments, a
    selection that names no host) is a plan with `error` and no host."""

    identity: Identity
    command: str
    arguments: Mapping[str, object]
    selectors: tuple[str, ...]
    hosts: tuple[str, ...] = ()  # every host the selection names, in order
    calls: tuple[Preparation, ...] = ()  # each host's call, prepared (or refused)
    runnable: tuple[str, ...] = ()  # those prepared, and not offline
    error: Exception | None = None
    filter_expression: str | None = None  # as the caller wrote it
    filter: RowFilter | None = None  # the same, checked: keep the hosts whose rows match

    @property
    def rendered(self) -> str:
        """The exact command line, the same on every host ("" if it runs on none)."""
        return next((c.rendered for c in self.calls if isinstance(c, PreparedCall)), "")

    @property
    def confirmed_by_caller(self) -> tuple[str, ...]:
        """The runnable hosts where the call asks the caller (no standing approval, no
        second person): what the one confirmation names."""
        asking = {c.host.name for c in self.calls
                  if isinstance(c, PreparedCall) and c.asks == "caller"}
        return tuple(h for h in self.runnable if h in asking)

    @property
    def runs_as(self) -> str | None:
        """Who it runs as where the caller is asked (users joined if hosts differ)."""
        asking = set(self.confirmed_by_caller)
        users = sorted({c.runs_as for c in self.calls if isinstance(c, PreparedCall)
                        and c.host.name in asking and c.runs_as})
        return ", ".join(users) or None

    @property
    def question(self) -> str:
        """What the one confirmation asks (the chat accepts only an elicitation asking it)."""
        hosts = self.confirmed_by_caller
        elevated = f" as {self.runs_as}" if self.runs_as else ""
        return (f"Run destructive command '{self.command}' on {len(hosts)} host(s): "
                f"{', '.join(hosts)}{elevated}? The command line on each: {self.rendered}")


@dataclass(frozen=True)
class FilterSummary:
    """What a fan-out's filter kept: the hosts that matched are listed, those that did not
    are only counted; undetermined ones (ok, but no data or no verdict) are listed."""

    expression: str
    matched: int
    not_matched: int
    undetermined: int
    note: str = ""  # e.g. a field the filter names that no host's rows had

    @classmethod
    def of(cls, row_filter: RowFilter, outcomes: Sequence[HostOutcome],
           tally: FilterTally) -> FilterSummary:
        missing = tally.missing(row_filter)
        note = (f"no row of any host had {', '.join(missing)} (the filter saw them as null, "
                f"so they matched nothing); the rows had: {', '.join(sorted(tally.seen))}"
                if missing else "")
        return cls(row_filter.expression, sum(o.matched is True for o in outcomes),
                   sum(o.matched is False for o in outcomes),
                   sum(o.status == "ok" and o.matched is None for o in outcomes), note)


@dataclass(frozen=True)
class FanoutResult:
    fanout: str  # the id the audit records of every host share
    command: str
    rendered: str
    hosts: tuple[HostOutcome, ...]  # with a filter, without the hosts that did not match
    duration_ms: float
    summary: Mapping[str, int] = field(default_factory=dict)  # every host
    filter: FilterSummary | None = None

    @classmethod
    def of(cls, fanout: str, plan: FanoutPlan, outcomes: Sequence[HostOutcome],
           duration_ms: float, tally: FilterTally | None = None) -> FanoutResult:
        summary = {"total": len(outcomes)}
        summary.update({s: sum(o.status == s for o in outcomes) for s in STATUSES})
        kept = tuple(o for o in outcomes if o.matched is not False)
        verdicts = (FilterSummary.of(plan.filter, outcomes, tally)
                    if plan.filter is not None and tally is not None else None)
        return cls(fanout, plan.command, plan.rendered, kept, duration_ms, summary, verdicts)


def select_hosts(selectors: Sequence[str], visible: Sequence[str],
                 tags: Callable[[str], Sequence[str]]) -> list[str]:
    """The hosts `selectors` name among `visible` (those the caller may use), in order.

    A selector is `all`, `tag:<name>`, a glob, or a host name; a name that is not a
    host, or a selection that matches nothing, is an error before anything runs.
    """
    if not selectors:
        raise ConfigError("no hosts given: name hosts, globs like web-*, tag:<name> or all")
    chosen: list[str] = []
    for selector in selectors:
        selector = selector.strip()
        if selector.lower() == ALL:
            found = list(visible)
        elif selector.startswith("tag:"):
            found = [h for h in visible if selector in tags(h)]
        elif any(ch in selector for ch in "*?["):
            found = [h for h in visible if fnmatch.fnmatchcase(h, selector)]
        elif selector in visible:
            found = [selector]
        else:
            raise UnknownHost(selector, visible)
        chosen += [h for h in found if h not in chosen]
    if not chosen:
        raise ConfigError(f"{', '.join(selectors)} matches none of the hosts you can use: "
                          f"{', '.join(visible) or 'none'}")
    return chosen


def plan(service: CallerView, command_name: str, arguments: Mapping[str, object],
         selectors: Sequence[str], identity: Identity,
         filter_expression: str | None = None) -> FanoutPlan:
    """What a fan-out would do, before anything runs: each selected host's call prepared
    (agent.core.prepare). What concerns the whole call is its `error`: a selection that
    names no host, an unknown command, arguments that do not validate (checked only where
    the policy lets the caller run the command, like a single call), a filter that cannot
    be used on the command (agent/core/row_filter.py)."""
    request = FanoutPlan(identity, command_name, MappingProxyType(dict(arguments)),
                         tuple(selectors), filter_expression=filter_expression)
    try:
        hosts = select_hosts(selectors, service.visible_hosts(identity), service.hosts.tags)
    except ConfigError as exc:
        return dataclasses.replace(request, error=exc)
    calls: list[Preparation] = []
    for host in hosts:
        call = service.prepare(command_name, arguments, host=host, identity=identity)
        if isinstance(call, Unprepared) and isinstance(call.error, WhitelistError):
            return dataclasses.replace(request, error=call.error)  # the same on every host
        calls.append(call)
    runnable = tuple(c.host.name for c in calls if isinstance(c, PreparedCall)
                     and service.hosts.presence(c.host.name).online is not False)
    row_filter = None
    command = next((c.command for c in calls if isinstance(c, PreparedCall)), None)
    if filter_expression is not None and command is not None:
        try:
            row_filter = compile_filter(filter_expression, command)
        except FilterError as exc:
            return dataclasses.replace(request, error=exc)
    return dataclasses.replace(request, hosts=tuple(hosts), calls=tuple(calls),
                               runnable=runnable, filter=row_filter)


Progress = Callable[[int, int, HostOutcome], Awaitable[None]]


async def run_on_hosts(
    service: AgentService,
    fanout_plan: FanoutPlan,
    *,
    confirm: Confirm | None = None,
    progress: Progress | None = None,
) -> FanoutResult:
    """Execute the plan's call on every host; `progress(done, total, outcome)` is awaited
    as each host finishes. Raises only for what concerns the whole call (the plan's
    `error`, recorded and charged to the caller's rate like any refused call)."""
    if fanout_plan.error is not None:
        refusal = service.refused(
            fanout_plan.identity, tool=TOOL, command=fanout_plan.command, host=None,
            arguments={"hosts": list(fanout_plan.selectors),
                       "parameters": dict(fanout_plan.arguments),
                       **({"filter": fanout_plan.filter_expression}
                          if fanout_plan.filter_expression is not None else {})},
            error=fanout_plan.error)
        raise refusal.error(fanout_plan.error) from None
    fanout = f"fan-{secrets.token_hex(6)}"
    limit = asyncio.Semaphore(service.settings.fanout_concurrency)
    total = len(fanout_plan.calls)
    done = 0
    started = time.monotonic()
    tally = FilterTally()

    async def one(call: Preparation) -> HostOutcome:
        nonlocal done
        async with limit:
            outcome = await _run_one(service, call, confirm, fanout)
        if fanout_plan.filter is not None:
            outcome = outcome.filtered(fanout_plan.filter, tally)
        done += 1
        if progress is not None:
            await progress(done, total, outcome)
        return outcome

    outcomes = await together(one(c) for c in fanout_plan.calls)
    return FanoutResult.of(fanout, fanout_plan, outcomes, (time.monotonic() - started) * 1000,
                           tally)


async def together(calls: Iterable[Coroutine[Any, Any, T]]) -> list[T]:
    """The results of `calls`, run concurrently. Cancelled, or when one fails, it cancels
    the others and returns (raises) only once every call has ended; a failure is raised as
    itself, the first one if several failed (asyncio.TaskGroup, unwrapped)."""
    try:
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(call) for call in calls]
    except BaseExceptionGroup as failed:
        raise failed.exceptions[0] from None
    return [task.result() for task in tasks]


async def _run_one(service: AgentService, call: Preparation, confirm: Confirm | None,
                   fanout: str) -> HostOutcome:
    host = call.host.name if isinstance(call, PreparedCall) else call.host or ""
    started = time.monotonic()

    def ended(status: Status, error: str) -> HostOutcome:
        return HostOutcome(host, status, duration_ms=(time.monotonic() - started) * 1000,
                           error=error)

    try:
        result = await service.execute(call, confirm=confirm, fanout=fanout, tool=TOOL)
    except HostOffline as exc:
        return ended("offline", str(exc))
    except CallRefused as exc:
        return ended("refused", str(exc))
    except (HostError, ConfigError) as exc:  # unreachable; a host that left meanwhile
        return ended("failed", str(exc))
    error = ""
    if result.exit_status in NOT_RUNNABLE:
        error = (f"the program is missing or not executable on {host} "
                 f"(exit status {result.exit_status})")
    return HostOutcome(host, "ok" if result.ok else "failed", result.exit_status,
                       result.stdout, result.stderr, result.duration_ms, result.truncated,
                       result.timed_out, error, result.output_handle, result.audit_id,
                       result.data, result.parse_note)
