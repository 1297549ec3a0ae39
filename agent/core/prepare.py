"""Decide once: everything about a call that can be known before it runs, in one value.

`prepare` looks the command and the host up as the caller sees them, asks the policy,
checks the catalog's host binding, renders the exact command line, works out who it runs
as and which confirmation it needs (none, the caller's, or a second person's), and finds
the time-limited approval, if any, that covers exactly this action. Every front end shows
and decides from the `PreparedCall` it returns: the MCP confirmation resolvers, the chat
turn, the palette, fan-out planning. `AgentService.execute` runs it without deciding any
of it again; it only checks that the policy and the host are still the ones it was
prepared with (golink's shape: resolve the caller once, hand the result to every check).

A call that cannot be prepared is an `Unprepared` value rather than an exception, so a
front end can hand it on all the same: `execute` records the refusal and raises it.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Literal

from agent.access.identity import Identity
from agent.access.policy import Decision, Policy
from agent.errors import (
    CallChanged,
    CallRefused,
    ConfigError,
    NoDefaultHost,
    PolicyDenied,
    UnknownHost,
)
from agent.hosts.inventory import HostConfig
from whitelist import Command, WhitelistError, render

from .approvals import Action, Approval

if TYPE_CHECKING:
    from .visibility import CallerView

# Which confirmation a call needs: none (not destructive), the caller's own yes, or a
# second person's (a rule with `approvers`).
Confirmation = Literal["none", "caller", "approvers"]

# What preparing a call can fail with: an unknown or invalid command, an unknown host or
# a bad setting, a refusal (policy, catalog host binding).
PREPARE_ERRORS = (WhitelistError, ConfigError, CallRefused)


@dataclass(frozen=True)
class PreparedCall:
    """One call, decided: what runs, where, as whom, allowed by which rule, confirmed how."""

    identity: Identity
    command: Command
    arguments: Mapping[str, object]  # as the caller sent them (read-only)
    host: HostConfig
    decision: Decision  # allowed; the rule that allowed it
    rendered: str  # the exact command line
    runs_as: str | None  # the user sudo runs it as (None: the login user)
    confirmation: Confirmation  # what the rule requires
    standing: Approval | None  # a time-limited approval covering exactly this action
    # The policy it was decided by: `execute` checks it is still the service's.
    policy: Policy = field(repr=False, compare=False)

    @property
    def action(self) -> Action:
        """What an approval of this call covers (agent.core.approvals)."""
        return Action(self.identity.key, self.command.name, self.host.name, self.rendered,
                      self.runs_as, self.decision.rule, self.decision.approvers)

    @property
    def asks(self) -> Confirmation:
        """Whom this call asks now: nobody when it is not destructive or a standing approval
        covers it; else the caller, or the rule's second persons."""
        return "none" if self.standing is not None else self.confirmation

    @property
    def question(self) -> str:
        """What the person confirming reads (an MCP elicitation; the chat and the palette
        accept only an elicitation that asks exactly this): the command, the host, the user
        it runs as, the parameters and the exact command line."""
        shown = (json.dumps(dict(self.arguments), ensure_ascii=False, sort_keys=True)
                 if self.arguments else "(none)")
        elevated = f" as {self.runs_as}" if self.runs_as else ""
        text = (f"Run destructive command '{self.command.name}' on host "
                f"'{self.host.name}'{elevated}?\nParameters: {shown}\n"
                f"It runs exactly: {self.rendered}")
        if self.decision.approval_minutes:
            text += (f"\nYou may also approve identical calls for up to "
                     f"{self.decision.approval_minutes} minutes.")
        return text


@dataclass(frozen=True)
class Unprepared:
    """A call refused before anything was decided to run, with the caller's request."""

    identity: Identity
    command: str
    arguments: Mapping[str, object]
    host: str | None
    error: Exception

    @property
    def decision(self) -> Decision | None:
        return self.error.decision if isinstance(self.error, PolicyDenied) else None


Preparation = PreparedCall | Unprepared


def prepare(view: CallerView, command_name: str, arguments: Mapping[str, object], *,
            host: str | None, identity: Identity) -> Preparation:
    """Decide a call (see the module docstring). Order: the command, the host, the policy,
    the catalog's host binding, then the arguments: a caller learns a command's parameter
    rules only where they may run it."""
    target: HostConfig | None = None
    try:
        command = view.command(command_name, identity)
        target = _target(view, command, host, identity)
        decision = view.decide(identity, command, target)
        rendered = render(command, arguments)
    except PREPARE_ERRORS as exc:
        # Refused on a host the caller may name (the default one included): recorded as
        # refused there; otherwise the name they sent.
        return Unprepared(identity, command_name, MappingProxyType(dict(arguments)),
                          target.name if target is not None else host, exc)
    confirmation: Confirmation = ("none" if not command.destructive
                                  else "approvers" if decision.approvers else "caller")
    call = PreparedCall(
        identity=identity, command=command, arguments=MappingProxyType(dict(arguments)),
        host=target, decision=decision, rendered=rendered,
        runs_as=command.runs_as(target.become), confirmation=confirmation, standing=None,
        policy=view.policy)
    if confirmation == "none":
        return call
    return dataclasses.replace(call, standing=view.approvals.find(call.action))


def _target(view: CallerView, command: Command, host: str | None,
            identity: Identity) -> HostConfig:
    """The host, as this caller may name it. A caller who may use no host at all gets the
    same answer for a real host and a made-up one: the policy's refusal (naming no host),
    or, for a name a grant of theirs covers, that no such host exists."""
    try:
        return view.host(host, identity)
    except (UnknownHost, NoDefaultHost):
        if identity.is_operator or view.visible_hosts(identity):
            raise
    # Decided by the name alone: whether such a host exists plays no part.
    view.policy.check(identity, command, host if host is not None else "", ())
    raise UnknownHost(host, []) if host is not None else NoDefaultHost([], caller=True)


def unchanged(view: CallerView, call: PreparedCall) -> PreparedCall:
    """`call`, if the policy and its host are still the ones it was prepared with.
    Otherwise it is prepared again (by `prepare`, from the caller's own request and the
    host it was prepared for) and runs only if it comes out the same action under the same
    decision; raises its refusal, or CallChanged."""
    if call.policy is view.policy and view.hosts.get(call.host.name) == call.host:
        return call
    fresh = prepare(view, call.command.name, call.arguments, host=call.host.name,
                    identity=call.identity)
    if isinstance(fresh, Unprepared):
        raise fresh.error
    if (fresh.action, fresh.decision, fresh.confirmation) != (
            call.action, call.decision, call.confirmation):
        raise CallChanged(
            f"the agent's policy or host {call.host.name!r} changed after "
            f"{call.command.name!r} was prepared (and confirmed): it would now run as "
            f"{fresh.runs_as or 'the login user'} under {fresh.decision.rule!r}. Nothing "
            "ran; run it again to be asked about it as it is now.")
    return fresh
