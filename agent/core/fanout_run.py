"""One catalog command, with one set of parameters, on many hosts at once.

Each host's call is prepared like a single call (`plan`: agent.core.prepare decides it)
and goes through `AgentService.execute`: the audit log gets its start and end records
(all sharing the fan-out's id, with its strategy and the batch), the per-host limits
apply, an offline host is answered at once. The caller's rate budget is charged once for
the whole fan-out, before any host runs (AgentService.charge_fanout). Hosts run by the
plan's strategy (agent.fanout.strategy: all at once, a canary first, or in rolling
batches), at most `fanout_concurrency` at a time (a setting), and one host's failure
never touches the others' calls: every host ends as ok, failed, offline, refused, or
skipped when the strategy stopped before its batch (recorded as not run, with why).

A destructive command is confirmed once for the whole fan-out: the plan's `question`
names the hosts where the caller's yes is needed (compacted, agent.fanout.hostlist), the
strategy and the exact command line, and the answer goes with exactly those prepared
calls. What a caller is shown of the outcome, grouped and within a byte budget, is
agent.fanout.view's.

A filter (agent.fanout.row_filter, on a command with a parser) is checked with the plan,
before anything runs, and applied to each host as it ends: the hosts whose rows match
are listed (with the rows that matched instead of their text), grouped like any others;
those that do not match are only counted (`FilterSummary`); those the filter could not
decide are listed with a note.

A cancelled fan-out cancels every host's call and returns only once each has ended: its
remote command stopped, its slot free, its end record written (`together`; asyncio.gather
would return at the first host's end and leave the others stopping behind it).
"""

from __future__ import annotations

import asyncio
import dataclasses
import fnmatch
import logging
import secrets
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, TypeVar

from agent.access.identity import Identity
from agent.errors import CallRefused, ConfigError, HostError, HostOffline, UnknownHost
from agent.fanout import hostlist
from agent.fanout import view as fanout_view
from agent.fanout.host_outcome import STATUSES, HostOutcome, Status
from agent.fanout.row_filter import FilterError, FilterTally, RowFilter, compile_filter
from agent.fanout.strategy import Strategy, StrategyRequest
from agent.output.store import new_handle
from whitelist import WhitelistError

from .call_record import FanoutPart
from .prepare import Preparation, PreparedCall, Unprepared

if TYPE_CHECKING:
    from .consent import Confirm
    from .service import AgentService
    from .visibility import CallerView

__all__ = ["STATUSES", "FanoutPlan", "FanoutResult", "FilterSummary", "HostOutcome", "Status",
           "plan", "run_on_hosts", "select_hosts"]

T = TypeVar("T")
ALL = "all"
log = logging.getLogger("tailnet_agent.calls")  # with the single calls' lines (service.py)

TOOL = "run_on_hosts"  # the MCP tool (and the chat's) that runs a fan-out
# Exit statuses of a program that is missing or not executable on the host.
NOT_RUNNABLE = (126, 127)


@dataclass(frozen=True)
class FanoutPlan:
    """A run_on_hosts call prepared: each host's prepared call, the strategy it runs by,
    and what its one confirmation asks. A call refused as a whole (an unknown command,
    invalid arguments or strategy, a selection that names no host) is a plan with `error`
    and no host."""

    identity: Identity
    command: str
    arguments: Mapping[str, object]
    selectors: tuple[str, ...]
    hosts: tuple[str, ...] = ()  # every host the selection names, in order
    calls: tuple[Preparation, ...] = ()  # each host's call, prepared (or refused)
    runnable: tuple[str, ...] = ()  # those prepared, and not offline: the ones that run
    error: Exception | None = None
    strategy: Strategy = field(default_factory=Strategy)
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
    def hosts_shown(self) -> str:
        """The hosts the confirmation names, compacted (`web-[001-180], db-1`), cut within
        a sentence's length with how many more."""
        return hostlist.shown(self.confirmed_by_caller)

    @property
    def how(self) -> str:
        """How it goes through the hosts it runs on: the strategy, in one sentence."""
        return self.strategy.describe(self.runnable)

    @property
    def question(self) -> str:
        """What the one confirmation asks (the chat accepts only an elicitation asking it)."""
        hosts = self.confirmed_by_caller
        elevated = f" as {self.runs_as}" if self.runs_as else ""
        return (f"Run destructive command '{self.command}' on {len(hosts)} host(s): "
                f"{self.hosts_shown}{elevated}? Strategy: {self.how}. The command line on "
                f"each: {self.rendered}")


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

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class FanoutResult:
    fanout: str  # the id the audit records of every host share
    command: str
    rendered: str
    # Every host, in the order the plan named them; with a filter, without the hosts that
    # did not match (`filter` counts them).
    hosts: tuple[HostOutcome, ...]
    duration_ms: float
    summary: Mapping[str, int] = field(default_factory=dict)  # every host
    strategy: Strategy = field(default_factory=Strategy)
    batches: int = 1  # how many batches the strategy made
    ran_batches: int = 1  # how many of them ran (fewer when it stopped)
    stopped: str = ""  # why the strategy stopped before the last batch ("": it did not)
    view: fanout_view.View | None = None  # what a caller is shown (fanout_view.present)
    filter: FilterSummary | None = None

    @classmethod
    def of(cls, fanout: str, plan: FanoutPlan, outcomes: Sequence[HostOutcome],
           duration_ms: float, tally: FilterTally | None = None, **run: Any) -> FanoutResult:
        summary = {"total": len(outcomes)}
        summary.update({s: sum(o.status == s for o in outcomes) for s in STATUSES})
        kept = tuple(o for o in outcomes if o.matched is not False)
        verdicts = (FilterSummary.of(plan.filter, outcomes, tally)
                    if plan.filter is not None and tally is not None else None)
        return cls(fanout, plan.command, plan.rendered, kept, duration_ms, summary,
                   plan.strategy, filter=verdicts, **run)

    def head(self) -> dict[str, Any]:
        """The result's fields other than its groups and hosts."""
        strategy = {**self.strategy.to_dict(), "batches": self.batches,
                    "ran_batches": self.ran_batches}
        if self.stopped:
            strategy["stopped"] = self.stopped
        head = {"fanout": self.fanout, "command": self.command, "rendered": self.rendered,
                "strategy": strategy, "summary": dict(self.summary),
                "duration_ms": round(self.duration_ms, 1)}
        if self.filter is not None:
            head["filter"] = self.filter.to_dict()
        return head

    def to_dict(self) -> dict[str, Any]:
        """The result as a caller is shown it (within the budget it was presented with)."""
        view = self.view or fanout_view.present(
            self.head(), self.hosts, budget=1 << 62, handle="")
        return {**self.head(), **view.fields}


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
         strategy: StrategyRequest | None = None,
         filter_expression: str | None = None) -> FanoutPlan:
    """What a fan-out would do, before anything runs: each selected host's call prepared
    (agent.core.prepare), the strategy (the caller's, or the command's default) and the
    filter, checked. What concerns the whole call is its `error`: a selection that names
    no host, an unknown command, arguments that do not validate (checked only where the
    policy lets the caller run the command, like a single call), a strategy that means
    nothing, a filter that cannot be used on the command (agent/fanout/row_filter.py)."""
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
    destructive = any(c.command.destructive for c in calls if isinstance(c, PreparedCall))
    try:
        chosen = (strategy or StrategyRequest()).resolve(destructive=destructive)
    except ConfigError as exc:
        return dataclasses.replace(request, error=exc)
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
                               runnable=runnable, strategy=chosen, filter=row_filter)


# Awaited as hosts finish: (hosts done, hosts in all, what happened: "batch 2/5: web-3: ok").
Progress = Callable[[int, int, str], Awaitable[None]]


def _host(call: Preparation) -> str:
    return call.host.name if isinstance(call, PreparedCall) else call.host or ""


async def run_on_hosts(
    service: AgentService,
    fanout_plan: FanoutPlan,
    *,
    confirm: Confirm | None = None,
    progress: Progress | None = None,
) -> FanoutResult:
    """Execute the plan's call on its hosts, batch by batch as its strategy says;
    `progress(done, total, message)` is awaited as each host finishes (and once for the
    hosts a stop leaves out). Raises only for what concerns the whole call (the plan's
    `error`, or the caller's rate limit), recorded like any refused call."""
    plan_ = fanout_plan
    arguments: dict[str, object] = {"hosts": list(plan_.selectors),
                                    "parameters": dict(plan_.arguments)}
    if plan_.filter_expression is not None:
        arguments["filter"] = plan_.filter_expression
    if plan_.error is not None:
        refusal = service.refused(plan_.identity, tool=TOOL, command=plan_.command,
                                  host=None, arguments=arguments, error=plan_.error)
        raise refusal.error(plan_.error) from None
    service.charge_fanout(plan_.identity, command=plan_.command, hosts=len(plan_.calls),
                          arguments=arguments)
    fanout = f"fan-{secrets.token_hex(6)}"
    strategy = plan_.strategy
    runnable = set(plan_.runnable)
    ready = [c for c in plan_.calls if isinstance(c, PreparedCall) and c.host.name in runnable]
    batches = strategy.batches(ready)
    limit = asyncio.Semaphore(service.settings.fanout_concurrency)
    total = len(plan_.calls)
    outcomes: dict[str, HostOutcome] = {}
    started = time.monotonic()
    tally = FilterTally()

    async def one(call: Preparation, part: FanoutPart) -> HostOutcome:
        async with limit:
            outcome = await _run_one(service, call, confirm, part)
        if plan_.filter is not None:
            outcome = outcome.filtered(plan_.filter, tally)
        outcomes[outcome.host] = outcome
        if progress is not None:
            await progress(len(outcomes), total, f"{_label(part)}{outcome.host}: "
                                                 f"{outcome.status}")
        return outcome

    # What the plan knows will not run (refused, offline) is answered (and recorded) first.
    before = FanoutPart(fanout, strategy.name, None, len(batches))
    await together(one(c, before) for c in plan_.calls if _host(c) not in runnable)
    failed, stopped, ran = 0, "", 0
    for number, batch in enumerate(batches, start=1):
        part = FanoutPart(fanout, strategy.name, number, len(batches))
        ended = await together(one(c, part) for c in batch)
        ran = number
        failed += sum(o.status != "ok" for o in ended)
        tolerated = strategy.tolerated
        if tolerated is not None and failed > tolerated and number < len(batches):
            stopped = _why_stopped(strategy, ended, failed, number, len(batches))
            break
    if stopped:
        skipped = 0
        for number, batch in enumerate(batches[ran:], start=ran + 1):
            part = FanoutPart(fanout, strategy.name, number, len(batches))
            for call in batch:
                service.not_run(call, part, f"not run: {stopped}")
                outcomes[call.host.name] = HostOutcome(
                    call.host.name, "skipped", error=f"not run: {stopped}", batch=number)
                skipped += 1
        if progress is not None:
            await progress(len(outcomes), total, f"{skipped} host(s) not run: {stopped}")
    in_order = [outcomes[_host(c)] for c in plan_.calls]
    result = FanoutResult.of(fanout, plan_, in_order, (time.monotonic() - started) * 1000,
                             tally, batches=len(batches), ran_batches=ran, stopped=stopped)
    _log_result(plan_.identity, result, in_order)
    return await _presented(service, plan_.identity, result)


def _log_result(identity: Identity, result: FanoutResult,
                outcomes: Sequence[HostOutcome]) -> None:
    """The fan-out in one line for the operator's terminal (its hosts' own lines are at
    DEBUG): the counts by status, and which hosts did not succeed, compacted."""
    counts = ", ".join(f"{count} {status}" for status, count in result.summary.items()
                       if status != "total" and count)
    failed = [o.host for o in outcomes if o.status != "ok"]
    level = logging.WARNING if failed else logging.INFO
    if not log.isEnabledFor(level):
        return
    where = f"; not ok: {hostlist.shown(failed, 200)}" if failed else ""
    stopped = f"; stopped: {result.stopped}" if result.stopped else ""
    log.log(level, "%s: %s on %d host(s) (%s, %s): %s in %.1f s%s%s", identity.display,
            result.command, len(outcomes), result.fanout, result.strategy.name,
            counts or "nothing ran", result.duration_ms / 1000, where, stopped,
            extra={"identity": identity.principal, "tool": TOOL, "command": result.command,
                   "fanout": result.fanout})


def _label(part: FanoutPart) -> str:
    """How a progress message names the batch ("" when there is only one)."""
    if part.batch is None or part.batches == 1:
        return ""
    if part.strategy == "canary":
        return "canary: " if part.batch == 1 else "after the canary: "
    return f"batch {part.batch}/{part.batches}: "


def _why_stopped(strategy: Strategy, ended: Sequence[HostOutcome], failed: int,
                 number: int, batches: int) -> str:
    if strategy.name == "canary":
        canary = ended[0]
        return f"the canary host {canary.host} {_failure(canary)}"
    first = next(o for o in ended if o.status != "ok") if failed else None
    example = f"; in it {first.host} {_failure(first)}" if first is not None else ""
    return (f"{failed} host(s) failed by batch {number} of {batches}, more than the "
            f"{strategy.max_failures} allowed (max_failures){example}")


def _failure(outcome: HostOutcome) -> str:
    """How a host failed, in a few words."""
    if outcome.timed_out:
        return "timed out"
    if outcome.status == "failed" and outcome.exit_status is not None:
        return f"failed with exit status {outcome.exit_status}"
    what = {"refused": "was refused", "offline": "was offline"}.get(outcome.status, "failed")
    reason = outcome.error.splitlines()[0][:160] if outcome.error else ""
    return f"{what}: {reason}" if reason else what


async def _presented(service: AgentService, identity: Identity,
                     result: FanoutResult) -> FanoutResult:
    """`result` with what its caller is shown: grouped, within the result budget; the
    whole of it kept behind a handle if that is less than everything."""
    handle = new_handle()
    view = fanout_view.present(result.head(), result.hosts,
                               budget=service.settings.fanout_result_bytes, handle=handle)
    if view.cut:
        await asyncio.to_thread(
            service.outputs.keep_document, identity, handle,
            [(part.names, part.text) for part in view.document], command=result.command,
            host=f"{len(result.hosts)} hosts", directory=service.settings.output_dir)
    return dataclasses.replace(result, view=view)


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
                   fanout: FanoutPart) -> HostOutcome:
    host = _host(call)
    started = time.monotonic()
    batch = fanout.batch if fanout.batches > 1 else None  # shown where there are several

    def ended(status: Status, error: str) -> HostOutcome:
        return HostOutcome(host, status, duration_ms=(time.monotonic() - started) * 1000,
                           error=error, batch=batch)

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
                       result.timed_out, error, result.output_handle, batch, result.digest,
                       result.audit_id, result.data, result.parse_note)
