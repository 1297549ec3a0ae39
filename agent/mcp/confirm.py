"""Asking a person before a destructive command runs, through MCP elicitation.

The tools' resolvers form a small DAG (the SDK's `Resolve`): `prepared_call` (or
`fanout_plan`) prepares the call once; `ask_confirmation` (or `ask_fanout_confirmation`)
asks from that value, and the tool body hands the same value to the service. The SDK turns
an `Elicit` into an elicitation request in the protocol the client speaks (mid-call on
older protocols, an input-required round trip on newer ones, where an answer counts only
for the exact question it was given: the question renders the whole prepared call).
`confirmation_check` is the `confirm` step AgentService.execute awaits; it raises
NotConfirmed unless a person said yes.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from mcp.server.elicitation import (
    AcceptedElicitation,
    CancelledElicitation,
    DeclinedElicitation,
    ElicitationResult,
)
from mcp.server.mcpserver import Context, Elicit, Resolve

from agent.core.fanout_run import FanoutPlan
from agent.core.prepare import Preparation, PreparedCall
from agent.errors import NotConfirmed
from agent.fanout.strategy import StrategyRequest

from .context import caller, service_of
from .models import Confirm, confirm_for

NOT_ASKED = "not asked"

NO_ELICITATION = (
    "'{name}' is destructive and needs a confirmation, but this MCP client does not support "
    "elicitation. Run it from the agent's chat page, which asks for a confirmation click, or "
    "use a client that supports elicitation."
)


def supports_form_elicitation(ctx: Context) -> bool:
    capabilities = ctx.client_capabilities
    elicitation = capabilities.elicitation if capabilities is not None else None
    return elicitation is not None and (elicitation.form is not None or elicitation.url is None)


def confirmation_check(name: str, outcome: ElicitationResult[Confirm] | None) -> Callable[
        [], Awaitable[int]]:
    """The `confirm` step AgentService.run awaits for a destructive command."""

    async def confirm() -> int:
        # A resolver that did not ask returns NOT_ASKED, which arrives as "accepted" data.
        if not isinstance(outcome, AcceptedElicitation) or not isinstance(outcome.data, Confirm):
            if isinstance(outcome, DeclinedElicitation | CancelledElicitation):
                raise NotConfirmed(f"'{name}' was not confirmed, so it did not run.")
            raise NotConfirmed(NO_ELICITATION.format(name=name))
        if not outcome.data.confirm:
            raise NotConfirmed(f"'{name}' was not confirmed, so it did not run.")
        minutes: int = getattr(outcome.data, "approve_minutes", 0)
        return minutes

    return confirm


async def prepared_call(
    command: str, ctx: Context, host: str | None = None,
    parameters: dict[str, Any] | None = None,
) -> Preparation:
    """Resolver for execute_command: the call, prepared once (agent.core.prepare). The
    question below and the tool body get this same value."""
    service = service_of(ctx)
    return service.prepare(command, parameters or {}, host=host,
                           identity=caller(ctx))


async def ask_confirmation(
    prepared: Annotated[Preparation, Resolve(prepared_call)], ctx: Context,
) -> Elicit[Confirm] | str:
    """Resolver for execute_command: ask a person before a destructive command runs, with
    the prepared call's question. Nobody is asked about a call that cannot run, about one
    a time-limited approval covers, nor about one a second person must approve."""
    if (not isinstance(prepared, PreparedCall) or prepared.asks != "caller"
            or not supports_form_elicitation(ctx)):
        return NOT_ASKED
    return Elicit(prepared.question, confirm_for(prepared.decision.approval_minutes))


def selector_list(hosts: list[str] | str) -> list[str]:
    """run_on_hosts' `hosts`: a list, or one string of comma-separated selectors."""
    items = [hosts] if isinstance(hosts, str) else hosts
    return [part.strip() for item in items for part in item.split(",") if part.strip()]


async def fanout_plan(
    command: str, hosts: list[str] | str, ctx: Context,
    parameters: dict[str, object] | None = None, filter: str | None = None,
    strategy: str | None = None, batch_size: int | None = None,
    max_failures: int | None = None,
) -> FanoutPlan:
    """Resolver for run_on_hosts: every host's call, prepared once, the strategy it runs
    by and its filter, checked (agent.core.fanout_run)."""
    service = service_of(ctx)
    return service.plan_fanout(command, parameters or {}, selector_list(hosts),
                               caller(ctx),
                               StrategyRequest(strategy, batch_size, max_failures), filter)


async def ask_fanout_confirmation(
    plan: Annotated[FanoutPlan, Resolve(fanout_plan)], ctx: Context,
) -> Elicit[Confirm] | str:
    """Resolver for run_on_hosts: one question for a destructive command on many hosts,
    naming the hosts where it needs the caller's yes (compacted), how many, the strategy
    and the exact command line."""
    if plan.error is not None or not plan.confirmed_by_caller or not (
            supports_form_elicitation(ctx)):
        return NOT_ASKED
    return Elicit(plan.question, Confirm)
