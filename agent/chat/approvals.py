"""The approvals view: commands under the two-person rule, waiting for a second person.

GET  /approvals             the page: requests this person may decide, and their own
GET  /approvals/list        the same list as a fragment (the page polls it)
POST /approvals/{id}        approve or deny (form: decision, minutes)

An eligible approver (a rule's `approvers`, never the person who asked) sees who asked,
from which node, the host, the parameters and the exact command line. The decision goes
to the waiting call, which writes both identities into its audit record and answers the
caller (over MCP, as the tool result).
"""

from __future__ import annotations

import json
import time

from starlette.requests import Request
from starlette.responses import Response

from agent.core.approvals import ApprovalRequest
from agent.core.errors import CallRefused
from agent.core.identity import Identity

from . import views
from .csrf import TOKEN_HEADER
from .responses import forbidden, html
from .state import ChatState, approve_minutes


def _shown(request: ApprovalRequest) -> dict[str, object]:
    return {
        "id": request.id, "who": request.requester.principal, "node": request.requester.node,
        "host": request.host, "command": request.command, "rendered": request.rendered,
        "parameters": json.dumps(dict(request.parameters), ensure_ascii=False),
        "runs_as": request.runs_as, "approvers": request.who_may_approve,
        "max_minutes": request.max_minutes,
        "seconds_left": max(0, int(request.expires - time.monotonic())),
    }


class ApprovalsView:
    def __init__(self, state: ChatState) -> None:
        self.state = state
        self.pending = state.service.pending

    def _lists(self, identity: Identity) -> dict[str, object]:
        return {"to_decide": [_shown(r) for r in self.pending.visible_to(identity)],
                "mine": [_shown(r) for r in self.pending.asked_by(identity)]}

    async def page(self, request: Request) -> Response:
        identity, session = self.state.session(request)
        return html(views.template("approvals.html").render(
            identity=identity, headers_json=json.dumps({TOKEN_HEADER: session.token}),
            **self._lists(identity)))

    async def listing(self, request: Request) -> Response:
        identity, _ = self.state.session(request)
        return html(self._fragment(identity))

    def _fragment(self, identity: Identity, error: str = "") -> str:
        return str(views.template("approvals_list.html").render(error=error,
                                                                **self._lists(identity)))

    async def decide(self, request: Request) -> Response:
        checked = await self.state.checked(request)
        if checked is None:
            return forbidden()
        identity, _ = checked
        form = await self.state.form(request)
        try:
            self.pending.decide(request.path_params["request"], identity,
                                approve=form.get("decision") == "approve",
                                minutes=approve_minutes(form))
        except CallRefused as exc:
            return html(self._fragment(identity, str(exc)), status_code=403)
        return html(self._fragment(identity))
