"""A chat tool call that runs a catalog command, prepared before it is made: what its
confirmation box names (the host, or the hosts a fan-out asks about, compacted, with how
many and the strategy it runs by; the user it runs as, the exact command line) and
whether it asks the person at all.

The preparation is the service's (agent.core.prepare, agent.core.fanout_run), from the tool
call's own arguments, so it is the one the MCP tool's resolvers make again when the call
arrives; the chat accepts that call's elicitation only if it asks exactly the question
this preparation asks (agent.chat.agent_loop).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from agent.access.identity import Identity
from agent.core.fanout_run import FanoutPlan
from agent.core.prepare import PreparedCall, Unprepared
from agent.core.service import AgentService
from agent.fanout.strategy import StrategyRequest
from agent.mcp.confirm import selector_list

# Tools that run a catalog command named by their `command` argument: a destructive one
# waits for the person's click.
CONFIRMED_TOOLS = ("execute_command", "run_on_hosts")

ToolPreparation = PreparedCall | Unprepared | FanoutPlan
# Prepares a call of one of CONFIRMED_TOOLS (tool name, tool arguments) as the service
# will: as the person asking sees it. None: arguments the tool's schema refuses anyway.
ToolPreparer = Callable[[str, Mapping[str, Any]], ToolPreparation | None]


@dataclass(frozen=True)
class Target:
    """What the chat shows of a prepared tool call, and whether it asks for a click."""

    host: str  # the host, or the hosts a fan-out asks about (compacted: web-[1-3], db-1)
    rendered: str  # the exact command line ("" when it could not be prepared)
    runs_as: str | None
    question: str | None  # the confirmation it needs from the person (None: no click)
    hosts: int | None = None  # a fan-out: how many hosts it asks about
    strategy: str | None = None  # a fan-out: how it goes through them (FanoutPlan.how)


@dataclass(frozen=True)
class ToolRequest:
    """A call of one of CONFIRMED_TOOLS, as its arguments say."""

    command: str
    parameters: Mapping[str, object]
    host: str | None
    selectors: list[str]  # run_on_hosts' hosts
    strategy: StrategyRequest  # run_on_hosts' strategy, batch_size, max_failures
    filter: str | None = None  # run_on_hosts' filter


def tool_request(tool: str, arguments: Mapping[str, Any]) -> ToolRequest | None:
    """The request of a call of one of CONFIRMED_TOOLS, or None when its arguments do not
    have the types the tool's schema requires."""
    command, parameters = arguments.get("command"), arguments.get("parameters") or {}
    host, hosts = arguments.get("host"), arguments.get("hosts") or []
    strategy, row_filter = StrategyRequest.of(arguments), arguments.get("filter")
    if not isinstance(command, str) or not isinstance(parameters, dict) or not (
            host is None or isinstance(host, str)) or not isinstance(hosts, list | str) or (
            strategy is None) or not (row_filter is None or isinstance(row_filter, str)):
        return None
    if isinstance(hosts, list) and not all(isinstance(h, str) for h in hosts):
        return None
    return ToolRequest(command, parameters, host,
                       selector_list(hosts) if tool == "run_on_hosts" else [], strategy,
                       row_filter)


def target(preparation: ToolPreparation, shown_host: str) -> Target:
    """What to show of a prepared call (`shown_host`: what to name when it names none)."""
    if isinstance(preparation, PreparedCall):
        asks = preparation.asks == "caller"
        return Target(preparation.host.name, preparation.rendered, preparation.runs_as,
                      preparation.question if asks else None)
    if isinstance(preparation, FanoutPlan) and preparation.error is None:
        asking = preparation.confirmed_by_caller
        if not asking:
            return Target(shown_host, preparation.rendered, preparation.runs_as, None)
        return Target(preparation.hosts_shown, preparation.rendered, preparation.runs_as,
                      preparation.question, len(asking), preparation.how)
    return Target(shown_host, "", None, None)


def preparer(service: AgentService, identity: Identity) -> ToolPreparer:
    """The chat turn's `prepare` for this person: the service's preparation of the call,
    from the tool call's own arguments only (nothing the chat decided itself)."""

    def prepare(tool: str, arguments: Mapping[str, Any]) -> ToolPreparation | None:
        request = tool_request(tool, arguments)
        if request is None:
            return None
        if tool == "run_on_hosts":
            return service.plan_fanout(request.command, request.parameters, request.selectors,
                                       identity, request.strategy, request.filter)
        return service.prepare(request.command, request.parameters, host=request.host,
                               identity=identity)

    return prepare
