"""Runbook starters on the chat page: the MCP prompts (agent/mcp/runbooks.py) as buttons that
ask Claude to work through a runbook on a host.

POST /chat/runbook   form: runbook, host, unit (for runbooks about one service)
"""

from __future__ import annotations

import re

from starlette.requests import Request
from starlette.responses import Response

from agent.errors import ConfigError
from agent.mcp.runbooks import BY_NAME, render
from whitelist.param_types import UNIT_PATTERN

from .. import views
from ..responses import forbidden, html
from ..state import ChatState
from .conversation import Chat


class Starters:
    def __init__(self, state: ChatState, chat: Chat) -> None:
        self.state = state
        self.chat = chat

    async def start(self, request: Request) -> Response:
        checked = await self.state.checked(request)
        if checked is None:
            return forbidden()
        identity, session = checked
        form = await self.state.form(request)
        runbook = BY_NAME.get(form.get("runbook", ""))
        service = self.state.service
        unit = form.get("unit", "").strip()
        if runbook is None or not self.state.has_key:
            return html(views.message_fragment("error", "That runbook is not available here."))
        if runbook.needs_unit and not re.fullmatch(UNIT_PATTERN, unit):
            return html(views.message_fragment(
                "error", "Name the systemd unit first, like nginx or nginx.service."))
        try:
            host = service.host(form.get("host") or None, identity).name
        except ConfigError as exc:
            return html(views.message_fragment("error", str(exc)))
        visible = {c.name for c in service.visible_commands(identity)}
        question = render(runbook, host=host, unit=unit, may_run=visible.__contains__)
        return await self.chat.start_turn(identity, session, question)
