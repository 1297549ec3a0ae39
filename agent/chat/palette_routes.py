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

from whitelist import WhitelistError, render

from . import views
from .cards import ToolCard, declined_card
from .mcp_calls import run_catalog_command
from .palette import PARAM_PREFIX, arguments_from_form
from .responses import forbidden, html
from .sessions import PendingRun
from .state import ChatState, approve_minutes


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
        try:
            command = self.service.command(name, identity)
            arguments = arguments_from_form(command, form)
            rendered = render(command, arguments)
        except WhitelistError as exc:
            # Refused before the tool ran: recorded and counted like any refused call.
            fields = {k: v for k, v in form.items() if k.startswith(PARAM_PREFIX)}
            error = self.service.refused(identity, tool="palette", command=name, host=host,
                                         arguments=fields, error=str(exc))
            return html(views.cards([ToolCard(tool="execute_command", host=host or "",
                                              command=name, error=error)], open_output=True))
        # A command the policy refuses is not worth a confirmation click: run it, and
        # the refusal (recorded in the audit log) comes back as the card.
        if (command.destructive and self.service.policy.visible(identity, command)
                and not self.state.approved(identity, host, rendered)):
            pending = secrets.token_hex(8)
            session.add_pending(pending, PendingRun(name, arguments, host, rendered))
            shown_host = host or self.state.default_host(identity) or ""
            return html(views.confirm(f"run-{pending}", shown_host, name, rendered,
                                      f"/chat/run/{pending}", replace_self=True,
                                      runs_as=self.service.runs_as(command, host)))
        cards = await run_catalog_command(self.service, self.state.mcp_server, identity, name,
                                          arguments, host, confirmed=False)
        return html(views.cards(cards, open_output=True))

    async def confirmed(self, request: Request) -> Response:
        checked = await self.state.checked(request)
        if checked is None:
            return forbidden()
        identity, session = checked
        pending = session.take_pending(request.path_params["pending"])
        if pending is None:
            return html(views.message_fragment("error", "That command is no longer pending."))
        form = await self.state.form(request)
        if form.get("decision") != "confirm":
            return html(views.cards([declined_card("execute_command", pending.host or "",
                                                   pending.rendered, command=pending.command)]))
        cards = await run_catalog_command(self.service, self.state.mcp_server, identity,
                                          pending.command, pending.arguments, pending.host,
                                          confirmed=True, minutes=approve_minutes(form))
        return html(views.cards(cards, open_output=True))
