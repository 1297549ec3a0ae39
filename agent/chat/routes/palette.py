"""The command palette's endpoints: run one catalog command directly, without Claude.

POST /chat/run               run a command (a destructive one answers with a confirmation)
POST /chat/run/{pending}     confirm or cancel that destructive command

A result is a card labelled with the command and host, open, and lands under the
form that ran it (the form's `hx-target`), so the page does not move.
"""

from __future__ import annotations

import secrets

from starlette.requests import Request
from starlette.responses import Response

from agent.core.prepare import Unprepared

from .. import views
from ..cards import ToolCard, declined_card
from ..mcp_calls import run_catalog_command
from ..palette import PARAM_PREFIX, arguments_from_form
from ..responses import forbidden, html
from ..sessions import PendingRun
from ..state import ChatState, approve_minutes


class Palette:
    def __init__(self, state: ChatState) -> None:
        self.state = state
        self.service = state.service

    async def run(self, request: Request) -> Response:
        checked = await self.state.checked(request)
        if checked is None:
            return forbidden()
        identity, session = checked
        form = await self.state.form(request)
        name = form.get("command", "")
        host = form.get("host") or None
        found = self.service.catalog.commands.get(name)
        arguments = arguments_from_form(found, form) if found is not None else {}
        # Decided once (agent.core.prepare): the policy before the arguments, so a caller
        # learns a command's parameter rules only where they may run it.
        prepared = self.service.prepare(name, arguments, host=host, identity=identity)
        if isinstance(prepared, Unprepared):
            # Refused before the tool ran: recorded and counted like any refused call.
            fields = {k: v for k, v in form.items() if k.startswith(PARAM_PREFIX)}
            refusal = self.service.refused(identity, tool="palette", command=name, host=host,
                                           arguments=fields, error=prepared.error)
            return html(views.cards([ToolCard(tool="execute_command", host=host or "",
                                              command=name, error=refusal.message)],
                                    open_output=True))
        if prepared.asks == "caller":
            pending = secrets.token_hex(8)
            session.add_pending(pending, PendingRun(prepared))
            return html(views.confirm(f"run-{pending}", prepared.host.name, name,
                                      prepared.rendered, f"/chat/run/{pending}",
                                      replace_self=True, runs_as=prepared.runs_as))
        # Not destructive, covered by a time-limited approval, or waiting for a second
        # person: no click here (the service cites the approval, or waits).
        cards = await run_catalog_command(self.service, self.state.mcp_server, identity, name,
                                          arguments, host)
        return html(views.cards(cards, open_output=True))

    async def confirmed(self, request: Request) -> Response:
        checked = await self.state.checked(request)
        if checked is None:
            return forbidden()
        identity, session = checked
        pending = session.take_pending(request.path_params["pending"])
        if pending is None:
            return html(views.message_fragment("error", "That command is no longer pending."))
        call = pending.call
        form = await self.state.form(request)
        if form.get("decision") != "confirm":
            return html(views.cards([declined_card("execute_command", call.host.name,
                                                   call.rendered, command=call.command.name)]))
        # The click confirms exactly the call the box showed: the same execute_command the
        # form would send, prepared again by the tool, must ask the very same question.
        cards = await run_catalog_command(self.service, self.state.mcp_server, identity,
                                          call.command.name, dict(call.arguments),
                                          call.host.name, confirmed=call.question,
                                          minutes=approve_minutes(form))
        return html(views.cards(cards, open_output=True))
