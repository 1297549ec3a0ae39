"""The approvals view: commands under the two-person rule, waiting for a second person.

GET  /approvals             the page: requests this person may decide, and their own
GET  /approvals/list        the same list as a fragment (the page polls it)
POST /approvals/{id}        approve or deny (form: decision, minutes)

Below them, the requests decided lately that this person asked for or decided, from the
audit log: how each ended, and a link to the replay of what ran.

An eligible approver (a rule's `approvers`, never the person who asked) sees who asked,
from which node, the host, the parameters and the exact command line. The decision goes
to the waiting call, which writes both identities into its audit record and answers the
caller (over MCP, as the tool result).
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from agent.access.identity import Identity
from agent.audit.reader import recent_calls, two_person
from agent.core.approvals import ApprovalRequest
from agent.errors import CallRefused

from .. import views
from ..csrf import TOKEN_HEADER
from ..responses import forbidden, html
from ..state import ChatState, approve_minutes
from .replay import replay_url


def _shown(request: ApprovalRequest) -> dict[str, object]:
    return {
        "id": request.id, "who": request.requester.principal, "node": request.requester.node,
        "host": request.host, "command": request.command, "rendered": request.rendered,
        "parameters": json.dumps(dict(request.parameters), ensure_ascii=False),
        "runs_as": request.runs_as, "approvers": request.who_may_approve,
        "max_minutes": request.max_minutes,
        "seconds_left": max(0, int(request.expires - time.monotonic())),
    }


DECIDED_SHOWN = 10  # requests decided lately, newest first


def _decided(record: dict[str, Any]) -> dict[str, object]:
    verdict = record.get("approved_by")
    verdict = verdict if isinstance(verdict, dict) else {}
    return {"command": record.get("command"), "host": record.get("host"),
            "who": record.get("identity"), "by": verdict.get("identity"),
            "decision": verdict.get("decision") or "not decided",
            "outcome": record.get("outcome"), "exit_status": record.get("exit_status"),
            "time": str(record.get("time", ""))[11:19],
            "replay": replay_url(str(record["call"])) if record.get("cast") else None}


class ApprovalsView:
    def __init__(self, state: ChatState) -> None:
        self.state = state
        self.pending = state.service.pending

    async def _lists(self, identity: Identity) -> dict[str, object]:
        decided = await asyncio.to_thread(recent_calls, self.state.service.audit.path,
                                          identity, limit=DECIDED_SHOWN, keep=two_person)
        return {"to_decide": [_shown(r) for r in self.pending.visible_to(identity)],
                "mine": [_shown(r) for r in self.pending.asked_by(identity)],
                "decided": [_decided(r) for r in decided]}

    async def page(self, request: Request) -> Response:
        identity, session = self.state.session(request)
        return html(views.template("approvals.html").render(
            identity=identity, headers_json=json.dumps({TOKEN_HEADER: session.token}),
            **await self._lists(identity)))

    async def listing(self, request: Request) -> Response:
        identity, _ = self.state.session(request)
        return html(await self._fragment(identity))

    async def _fragment(self, identity: Identity, error: str = "") -> str:
        return str(views.template("approvals_list.html").render(
            error=error, **await self._lists(identity)))

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
            return html(await self._fragment(identity, str(exc)), status_code=403)
        return html(await self._fragment(identity))
