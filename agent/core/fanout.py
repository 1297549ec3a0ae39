"""One catalog command, with one set of parameters, on many hosts at once.

Each host goes through `AgentService.run`, exactly like a single call: the policy
decides it, the audit log gets its start and end records (all sharing the fan-out's
id), the rate and per-host limits apply, an offline host is answered at once. Hosts
run concurrently, at most `fanout_concurrency` at a time (a setting), and one host's
failure never touches the others: every host ends as ok, failed, offline or refused.

A destructive command is confirmed once for the whole fan-out: `plan` lists the hosts
it would run on and the exact command line, which is what a person is asked about.
"""

from __future__ import annotations

import asyncio
import fnmatch
import secrets
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from whitelist import WhitelistError, render

from .errors import (
    CallRefused,
    ConfigError,
    HostError,
    HostOffline,
    RateLimited,
    UnknownHost,
)
from .identity import Identity

if TYPE_CHECKING:
    from .service import AgentService, Confirm

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

    def to_dict(self) -> dict[str, Any]:
        return {"host": self.host, "status": self.status, "exit_status": self.exit_status,
                "stdout": self.stdout, "stderr": self.stderr,
                "duration_ms": round(self.duration_ms, 1), "truncated": self.truncated,
                "timed_out": self.timed_out, "error": self.error,
                "output_handle": self.output_handle}


@dataclass(frozen=True)
class FanoutPlan:
    command: str
    rendered: str  # the exact command line, the same on every host
    hosts: tuple[str, ...]  # every host the selection names, in order
    runnable: tuple[str, ...]  # those the policy allows it on, that it applies to, online


@dataclass(frozen=True)
class FanoutResult:
    fanout: str  # the id the audit records of every host share
    command: str
    rendered: str
    hosts: tuple[HostOutcome, ...]
    duration_ms: float
    summary: Mapping[str, int] = field(default_factory=dict)

    @classmethod
    def of(cls, fanout: str, plan: FanoutPlan, outcomes: Sequence[HostOutcome],
           duration_ms: float) -> FanoutResult:
        summary = {"total": len(outcomes)}
        summary.update({s: sum(o.status == s for o in outcomes) for s in STATUSES})
        return cls(fanout, plan.command, plan.rendered, tuple(outcomes), duration_ms, summary)


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


def plan(service: AgentService, command_name: str, arguments: Mapping[str, object],
         selectors: Sequence[str], identity: Identity) -> FanoutPlan:
    """What a fan-out would do, before anything runs (validates the arguments once)."""
    command = service.command(command_name, identity)  # unknown: the caller's commands
    rendered = render(command, arguments)
    hosts = select_hosts(selectors, service.visible_hosts(identity), service.hosts.tags)
    runnable = []
    for name in hosts:
        tags = service.hosts.tags(name)
        if (service.policy.decide(identity, command, name, tags).allowed
                and command.applies_to(name, tags)
                and service.hosts.presence(name).online is not False):
            runnable.append(name)
    return FanoutPlan(command.name, rendered, tuple(hosts), tuple(runnable))


Progress = Callable[[int, int, HostOutcome], Awaitable[None]]


async def run_on_hosts(
    service: AgentService,
    command_name: str,
    arguments: Mapping[str, object],
    selectors: Sequence[str],
    *,
    identity: Identity,
    confirm: Confirm | None = None,
    progress: Progress | None = None,
) -> FanoutResult:
    """Run the command on every selected host; `progress(done, total, outcome)` is awaited
    as each host finishes. Raises only for what concerns the whole call (an unknown
    command, invalid arguments, a selection that names no host)."""
    try:
        fanout_plan = plan(service, command_name, arguments, selectors, identity)
    except (WhitelistError, ConfigError, CallRefused) as exc:
        # Refused before any host: recorded, and charged to the caller's rate, all the same.
        shown = service.refused(identity, tool=TOOL, command=command_name, host=None,
                                arguments={"hosts": list(selectors),
                                           "parameters": dict(arguments)},
                                error=str(exc))
        if shown != str(exc):
            raise RateLimited(shown) from None
        raise
    fanout = f"fan-{secrets.token_hex(6)}"
    limit = asyncio.Semaphore(service.settings.fanout_concurrency)
    total = len(fanout_plan.hosts)
    done = 0
    started = time.monotonic()

    async def one(host: str) -> HostOutcome:
        nonlocal done
        async with limit:
            outcome = await _run_one(service, command_name, arguments, host, identity,
                                     confirm, fanout)
        done += 1
        if progress is not None:
            await progress(done, total, outcome)
        return outcome

    outcomes = await asyncio.gather(*(one(h) for h in fanout_plan.hosts))
    return FanoutResult.of(fanout, fanout_plan, outcomes, (time.monotonic() - started) * 1000)


async def _run_one(service: AgentService, command_name: str, arguments: Mapping[str, object],
                   host: str, identity: Identity, confirm: Confirm | None,
                   fanout: str) -> HostOutcome:
    started = time.monotonic()

    def ended(status: Status, error: str) -> HostOutcome:
        return HostOutcome(host, status, duration_ms=(time.monotonic() - started) * 1000,
                           error=error)

    try:
        result = await service.run(command_name, arguments, host=host, identity=identity,
                                   confirm=confirm, fanout=fanout, tool=TOOL)
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
                       result.timed_out, error, result.output_handle)
