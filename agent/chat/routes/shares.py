"""Sharing a finished turn: the button's endpoint, and the read-only page a link opens.

POST /chat/share/{turn}    share one of this person's finished turns (the button under it);
                           answers with the link
GET  /share/{share}        the shared turn, read-only, for whoever may see it (shares.py)

Both go into the audit log: `turn-shared` (who, which calls, until when) before the link
is given (no record, no link), and `share-opened` the first time each identity opens
it, allowed or not. Opening takes a token of the viewer's rate, like a page of output.
"""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from agent.access.identity import Identity
from agent.audit.reader import OPENED_EVENT, SHARED_EVENT, find_call
from agent.audit.writer import identity_fields
from agent.errors import AuditUnavailable
from agent.web.middleware.identity import request_identity

from .. import views
from ..responses import forbidden, html
from ..shares import Share, ShareStore
from ..state import ChatState
from .replay import charge

log = logging.getLogger(__name__)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def hours(seconds: float) -> str:
    return f"{seconds / 3600:.0f} h" if seconds >= 3600 else f"{max(1, seconds // 60):.0f} min"


class ShareView:
    def __init__(self, state: ChatState) -> None:
        self.state = state
        self.service = state.service
        self.shares = ShareStore(state.service.settings.share_ttl)

    def _redact(self, text: str) -> str:
        return self.service.redactor.redact(text)[0]

    async def create(self, request: Request) -> Response:
        checked = await self.state.checked(request)
        if checked is None:
            return forbidden()
        identity, session = checked
        turn_id = request.path_params["turn"]
        turn = next((t for t in session.conversation.turns if t.id == turn_id), None)
        if turn is None:
            return html(views.message_fragment(
                "error", "That answer is no longer in this conversation (a new chat, or older "
                "answers dropped to keep it short); nothing was shared."), status_code=409)
        ids = [call for i in turn.items if i.card is not None for call in i.card.audit_ids]
        calls = await asyncio.to_thread(self._records, ids)
        share = self.shares.create(identity, turn, calls, self._redact)
        until = datetime.now(UTC) + timedelta(seconds=self.shares.ttl)
        try:
            self.service.audit.write({
                "time": _now(), "event": SHARED_EVENT, **identity_fields(identity),
                "share": share.id, "calls": share.audit_ids,
                "until": until.isoformat(timespec="seconds")})
        except AuditUnavailable as exc:
            self.shares.forget(share.id)
            return html(views.message_fragment("error", f"{exc} Nothing was shared."),
                        status_code=503)
        url = f"{str(request.base_url).rstrip('/')}/share/{share.id}"
        return html(views.share_link(turn_id, url, hours(self.shares.ttl)))

    def _records(self, ids: list[str]) -> list[dict[str, Any]]:
        """Each call's start record; a call whose record is no longer in the log stands as
        one nobody but an auditor may see."""
        records = []
        for call in ids:
            found = find_call(self.service.audit.path, call)
            records.append(found.call.start if found is not None else {"call": call})
        return records

    async def page(self, request: Request) -> Response:
        identity = request_identity(request)
        refused = charge(self.service, identity)
        if refused is not None:
            return refused
        share = self.shares.get(request.path_params["share"])
        allowed = share is not None and share.visible_to(identity, self.service.policy)
        if share is not None:
            self._opened(share, identity, allowed)
        if share is None or not allowed:
            return html(views.template("share.html").render(
                identity=identity, missing=(
                    f"No shared answer here for {identity.principal}. A shared answer opens for "
                    "the person who shared it and for whoever may see the audit records of "
                    "all its commands (auditors: a policy rule with 'audit: true'); it lasts "
                    f"{hours(self.shares.ttl)} and ends when the agent restarts. Ask the "
                    "person who shared it.")), status_code=404)
        return html(views.template("share.html").render(
            identity=identity, share=share,
            created=share.created.isoformat(timespec="minutes").replace("T", " ")[:16],
            expires_in=hours(share.expires - time.monotonic())))

    def _opened(self, share: Share, viewer: Identity, allowed: bool) -> None:
        """The first time each identity opens a share, in the audit log."""
        if share.opened.get(viewer.key) == allowed:
            return
        share.opened[viewer.key] = allowed
        try:
            self.service.audit.write({
                "time": _now(), "event": OPENED_EVENT, **identity_fields(viewer),
                "share": share.id, "shared_by": share.owner.principal, "allowed": allowed})
        except AuditUnavailable as exc:
            log.error("%s (%s opened shared answer %s)", exc, viewer.display, share.id)
