"""Asking a person before a destructive command runs, through MCP elicitation.

`ask_confirmation` is the SDK resolver of execute_command's `confirmation`
argument: the SDK turns its `Elicit` into an elicitation request in the protocol
the client speaks (mid-call on older protocols, an input-required round trip on
newer ones). `confirmation_check` is the `confirm` step AgentService.run awaits;
it raises NotConfirmed unless a person said yes.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

from mcp.server.elicitation import (
    AcceptedElicitation,
    CancelledElicitation,
    DeclinedElicitation,
    ElicitationResult,
)
from mcp.server.mcpserver import Context, Elicit

from agent.core.errors import ConfigError, NotConfirmed
from whitelist import WhitelistError, render

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


def confirmation_message(command: str, host: str, arguments: dict[str, Any], rendered: str,
                         *, runs_as: str | None = None) -> str:
    """What the person confirming reads: the command, the host (and the user it runs as),
    the parameters and the exact command line that will run (as the chat's confirm box
    shows them)."""
    shown = json.dumps(arguments, ensure_ascii=False, sort_keys=True) if arguments else "(none)"
    elevated = f" as {runs_as}" if runs_as else ""
    return (f"Run destructive command '{command}' on host '{host}'{elevated}?\n"
            f"Parameters: {shown}\n"
            f"It runs exactly: {rendered}")


async def ask_confirmation(
    command: str, ctx: Context, host: str | None = None,
    parameters: dict[str, Any] | None = None,
) -> Elicit[Confirm] | str:
    """Resolver for execute_command: ask a person before a destructive command runs.

    Nobody is asked about a command the policy would refuse anyway, about a call a
    time-limited approval still covers, about one a second person must approve, nor
    about arguments that do not validate (the call then fails with the validation error).
    """
    service = service_of(ctx)
    found = service.catalog.commands.get(command)
    if found is None or not found.destructive or not supports_form_elicitation(ctx):
        return NOT_ASKED
    identity = caller(service, ctx)
    try:
        target = service.host(host, identity)
        rendered = render(found, parameters or {})
    except (ConfigError, WhitelistError):
        return NOT_ASKED
    decision = service.policy.decide(identity, found, target.name, target.tags)
    if not decision.allowed or decision.approvers:
        return NOT_ASKED
    if service.approvals.find(identity, target.name, rendered) is not None:
        return NOT_ASKED
    runs_as = service.runs_as(found, target.name)
    message = confirmation_message(found.name, target.name, parameters or {}, rendered,
                                   runs_as=runs_as)
    if decision.approval_minutes:
        message += (f"\nYou may also approve identical calls for up to "
                    f"{decision.approval_minutes} minutes.")
    return Elicit(message, confirm_for(decision.approval_minutes))


def selector_list(hosts: list[str] | str) -> list[str]:
    """run_on_hosts' `hosts`: a list, or one string of comma-separated selectors."""
    items = [hosts] if isinstance(hosts, str) else hosts
    return [part.strip() for item in items for part in item.split(",") if part.strip()]


async def ask_fanout_confirmation(
    command: str, hosts: list[str] | str, ctx: Context,
    parameters: dict[str, object] | None = None,
) -> Elicit[Confirm] | str:
    """Resolver for run_on_hosts: one question for a destructive command on many hosts,
    listing every host it would run on and the exact command line."""
    service = service_of(ctx)
    found = service.catalog.commands.get(command)
    if found is None or not found.destructive or not supports_form_elicitation(ctx):
        return NOT_ASKED
    try:
        plan = service.plan_fanout(command, parameters or {}, selector_list(hosts),
                                   caller(service, ctx))
    except (ConfigError, WhitelistError):
        return NOT_ASKED  # the call fails with the same error, nobody needs asking
    if not plan.runnable:
        return NOT_ASKED
    return Elicit(
        f"Run destructive command '{found.name}' on {len(plan.runnable)} host(s): "
        f"{', '.join(plan.runnable)}? The command line on each: {plan.rendered}", Confirm)
