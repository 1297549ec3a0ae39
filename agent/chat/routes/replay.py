"""A call's recording on the web: the replay page and the cast it plays.

GET /audit/{call}/replay    the call's audit record, in short, and a player for its recording
GET /audit/{call}/cast      the recording itself (an asciinema v2 cast), for the player or a
                            download (`asciinema play` it)

Both answer only an identity that may see the call's audit record (agent.core.
audit_records.may_see: their own calls, the calls they approved as the second person,
every call for an auditor); for anyone else the call does not exist, like an unknown
one. Each request takes a token of the caller's rate, like a page of output.

The player is ours (agent/chat/static/replay.js, about 300 lines), not asciinema-player 3.x:
that one compiles a WebAssembly terminal, which the page's Content-Security-Policy
(`script-src 'self'`, no `'wasm-unsafe-eval'`) refuses, and its play button has no
accessible name. Our recordings are of commands run without a terminal, so they rarely
hold more than text, carriage returns and colours; the page's player shows those,
marks stderr, and plays, pauses and seeks with native controls. The cast file itself
is standard: any asciinema player plays the download.
"""

from __future__ import annotations

import asyncio
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from agent.access.identity import Identity
from agent.audit import casts
from agent.audit.reader import Found, find_call, may_see
from agent.core.service import AgentService
from agent.errors import RateLimited
from agent.web.middleware.identity import request_identity

from .. import views
from ..responses import SECURITY_HEADERS, html

CAST_TYPE = "application/x-asciicast"


def replay_url(call: str) -> str:
    return f"/audit/{call}/replay"


def cast_url(call: str) -> str:
    return f"/audit/{call}/cast"


def not_found(call: str, identity: Identity) -> str:
    return (f"No call {call[:40]!r} for {identity.principal}: its audit record and recording "
            "are shown to whoever made the call, to the person who approved it, and to "
            "auditors (a policy rule with 'audit: true'). Ask one of them, or the agent's "
            "operator (`tailnet-agent audit show`).")


async def visible_call(service: AgentService, identity: Identity, call: str) -> Found | None:
    """The call `identity` asks for, if they may see its record (None: not for them)."""
    found = await asyncio.to_thread(find_call, service.audit.path, call)
    if found is None or not may_see(found.call.start, identity, service.policy):
        return None
    return found


def summary(found: Found) -> dict[str, Any]:
    """What the replay page (and a shared turn's card) says of a call: from its record."""
    data = found.call.merged()
    approved = data.get("approved_by")
    return {
        "call": found.call.call, "time": str(data.get("time", ""))[:19].replace("T", " "),
        "identity": data.get("identity"), "node": data.get("node"),
        "command": data.get("command"), "host": data.get("host"),
        "rendered": data.get("rendered"), "outcome": data.get("outcome"),
        "exit_status": data.get("exit_status"), "duration_ms": data.get("duration_ms"),
        "approved_by": approved.get("identity") if isinstance(approved, dict) else None,
        "cast": data.get("cast") if isinstance(data.get("cast"), dict) else None,
    }


def charge(service: AgentService, identity: Identity) -> Response | None:
    """Take a token of the caller's rate for a page of the audit trail (a replay, a cast, a
    shared answer); the 429 to answer when none is left."""
    try:
        service.rate.take(identity)
    except RateLimited as exc:
        return _text(429, f"429 Too Many Requests: {exc}")
    return None


class ReplayView:
    def __init__(self, service: AgentService) -> None:
        self.service = service

    async def _found(self, request: Request) -> tuple[Identity, Found | None] | Response:
        identity = request_identity(request)
        refused = charge(self.service, identity)
        if refused is not None:
            return refused
        call = request.path_params["call"]
        return identity, await visible_call(self.service, identity, call)

    async def page(self, request: Request) -> Response:
        looked_up = await self._found(request)
        if isinstance(looked_up, Response):
            return looked_up
        identity, found = looked_up
        call = request.path_params["call"]
        if found is None:
            return html(views.template("replay.html").render(
                identity=identity, missing=not_found(call, identity)), status_code=404)
        record = summary(found)
        problem = ""
        if record["cast"] is None:
            problem = (f"This call has no recording: it ran no command (outcome "
                       f"{record['outcome']}).")
        else:
            problem = await asyncio.to_thread(self._problem, found, record["cast"])
        return html(views.template("replay.html").render(
            identity=identity, record=record, problem=problem, cast_url=cast_url(call)))

    def _problem(self, found: Found, ref: dict[str, Any]) -> str:
        """Why the recording cannot be played ("" when it can)."""
        try:
            casts.load(self.service.casts.directory, ref)
        except casts.CastMissing as exc:
            if found.cast_removed is not None:
                return (f"The recording was removed at {found.cast_removed.get('time')} to "
                        "stay within the agent's recordings budget "
                        "(TAILNET_AGENT_RECORDINGS_BUDGET). The audit record above remains.")
            return f"{exc}: it was deleted outside the agent."
        except casts.CastUnavailable as exc:
            return str(exc) + "."
        return ""

    async def cast(self, request: Request) -> Response:
        looked_up = await self._found(request)
        if isinstance(looked_up, Response):
            return looked_up
        identity, found = looked_up
        call = request.path_params["call"]
        ref = found.call.merged().get("cast") if found is not None else None
        if found is None or not isinstance(ref, dict):
            return _text(404, not_found(call, identity) if found is None
                         else f"Call {call} ran no command, so it has no recording.")
        try:
            data = await asyncio.to_thread(casts.load, self.service.casts.directory, ref)
        except casts.CastMissing:
            return _text(410, f"The recording of call {call} is gone (removed to stay within "
                              "the recordings budget, or deleted); its audit record remains.")
        except casts.CastUnavailable as exc:
            return _text(409, f"{exc}.")
        return Response(data, media_type=CAST_TYPE, headers={
            **SECURITY_HEADERS, "Content-Disposition": f'inline; filename="{call}.cast"'})


def _text(status: int, message: str) -> Response:
    return Response(f"{message}\n", status_code=status, media_type="text/plain",
                    headers=SECURITY_HEADERS)
