"""MCP sessions with owners and per-caller caps, in front of the SDK's session manager.

Any tailnet peer can `initialize`, whatever the policy grants it. The SDK's manager
caps sessions only globally (10,000 by default, 30 minutes idle), so one peer could
lock every other client out and grow memory by hundreds of MiB. This guard wraps the
SDK's /mcp endpoint (its ASGI app; the SDK itself is not changed) and:

- binds each session to the identity that opened it: another identity presenting its
  id gets the SDK's own 404 "Session not found", as if it did not exist;
- caps sessions per identity: a new one closes that identity's oldest idle session
  (idle: no request in flight, no open stream), or is refused with 429 when all are busy;
- caps sessions in all: at the cap, the oldest idle session of the identity holding
  the most is closed, so a newcomer still gets in;
- cancels a tool call whose client went away: a POST whose connection drops before its
  answer is complete gets a `notifications/cancelled` for its request, sent into its
  session as the client would have, so the call (and its remote command) stops;
- answers 400 to a GET with Last-Event-ID (resuming needs an event store; the SDK
  would answer 500).

Sessions are closed the way a client closes them: a DELETE with the session id,
handed to the SDK's app from here. Sessions the SDK ended by itself (idle timeout)
are forgotten when their idle time passes or when the SDK answers 404 for them.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS
from starlette.datastructures import Headers
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from agent.access.identity import Identity

from .middleware.identity import SCOPE_KEY

log = logging.getLogger(__name__)

SESSION_HEADER = "mcp-session-id"
VERSION_HEADER = "mcp-protocol-version"


@dataclass
class _Session:
    id: str
    owner: str
    opened: float
    last_active: float
    in_flight: int = 0
    version: str | None = None


@dataclass
class SessionLimits:
    per_identity: int = 16
    total: int = 1000
    idle_timeout: float = 600.0


def _error(message: str, status: int, code: int = -32600) -> Response:
    body = json.dumps({"jsonrpc": "2.0", "id": None, "error": {"code": code, "message": message}})
    return Response(body, status_code=status, media_type="application/json")


@dataclass
class SessionGuard:
    app: ASGIApp
    limits: SessionLimits = field(default_factory=SessionLimits)
    clock: Callable[[], float] = time.monotonic
    _sessions: dict[str, _Session] = field(default_factory=dict)
    _opening: dict[str, int] = field(default_factory=dict)  # opens under way, per owner

    # -- bookkeeping -----------------------------------------------------------------------

    def count(self, owner: str | None = None) -> int:
        self._prune()
        return sum(1 for s in self._sessions.values() if owner is None or s.owner == owner)

    def _prune(self) -> None:
        """Forget sessions the SDK has closed for idleness (its timer, our clock)."""
        now = self.clock()
        for sid, session in list(self._sessions.items()):
            if session.in_flight == 0 and now - session.last_active > self.limits.idle_timeout:
                del self._sessions[sid]

    def _make_room(self, owner: str) -> list[_Session] | None:
        """Choose the sessions to close so that one more of `owner` fits, and hold its place
        (checked and taken without an await: concurrent opens cannot all squeeze in).
        None when only busy sessions could go."""
        self._prune()
        victims: list[_Session] = []
        mine = [s for s in self._sessions.values() if s.owner == owner]
        excess = len(mine) + self._opening.get(owner, 0) + 1 - self.limits.per_identity
        if excess > 0:
            idle = sorted((s for s in mine if s.in_flight == 0), key=lambda s: s.last_active)
            if len(idle) < excess:
                return None
            victims += idle[:excess]
        opening = sum(self._opening.values())
        while len(self._sessions) - len(victims) + opening + 1 > self.limits.total:
            counts: dict[str, int] = {}
            for session in self._sessions.values():
                if session not in victims:
                    counts[session.owner] = counts.get(session.owner, 0) + 1
            victim = None
            for holder in sorted(counts, key=lambda o: counts[o], reverse=True):
                idle = [s for s in self._sessions.values()
                        if s.owner == holder and s.in_flight == 0 and s not in victims]
                if idle:
                    victim = min(idle, key=lambda s: s.last_active)
                    break
            if victim is None:
                return None
            victims.append(victim)
        for victim in victims:
            self._sessions.pop(victim.id, None)
        self._opening[owner] = self._opening.get(owner, 0) + 1
        return victims

    async def _close(self, session: _Session, scope: Scope) -> None:
        """End a session as its client would: DELETE with its id, through the SDK."""
        headers = [(SESSION_HEADER.encode(), session.id.encode())]
        if session.version:
            headers.append((VERSION_HEADER.encode(), session.version.encode()))
        await self._internal(scope, "DELETE", headers, b"")
        log.info("closed MCP session %s of %s to make room", session.id[:8], session.owner)

    async def _internal(self, scope: Scope, method: str, headers: list[tuple[bytes, bytes]],
                        body: bytes) -> int | None:
        """Hand the SDK a request of our own (in the caller's scope) and drop the answer."""
        status: int | None = None
        sent = False

        async def receive() -> Message:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return {"type": "http.disconnect"}

        async def send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]

        inner = {**scope, "method": method, "headers": [
            (b"content-type", b"application/json"),
            (b"accept", b"application/json, text/event-stream"),
            (b"content-length", str(len(body)).encode()), *headers]}
        await self.app(inner, receive, send)
        return status

    # -- requests --------------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        method = scope.get("method", "GET")
        if method == "GET" and "last-event-id" in headers:
            await _error("Resuming a stream with Last-Event-ID is not supported by this "
                         "server; open a new stream without it", 400)(scope, receive, send)
            return
        version = headers.get(VERSION_HEADER)
        identity = scope.get(SCOPE_KEY)
        if not isinstance(identity, Identity) or (
                version is not None and version not in HANDSHAKE_PROTOCOL_VERSIONS):
            # Newer protocols keep no session on the server; nothing to own or cap.
            await _answered(self.app, scope, receive, send)
            return
        sid = headers.get(SESSION_HEADER)
        if sid is None:
            if method != "POST":
                await _answered(self.app, scope, receive, send)
                return
            await self._open(identity, version, scope, receive, send)
            return
        session = self._sessions.get(sid)
        if session is None:
            await _answered(self.app, scope, receive, send)  # the SDK says 404
            return
        if session.owner != identity.key:
            log.warning("%s presented MCP session %s of another identity; answered 404",
                        identity.display, sid[:8])
            await _error("Session not found", 404)(scope, receive, send)
            return
        await self._serve(session, method, scope, receive, send)

    async def _open(self, identity: Identity, version: str | None, scope: Scope,
                    receive: Receive, send: Send) -> None:
        victims = self._make_room(identity.key)
        if victims is None:
            await _error(f"too many open MCP sessions for {identity.principal} (limit "
                         f"{self.limits.per_identity}) and all are busy; close one (DELETE) "
                         "or wait for one to finish", 429)(scope, receive, send)
            return
        opened: dict[str, Any] = {}

        async def watch(message: Message) -> None:
            if message["type"] == "http.response.start":
                opened["status"] = message["status"]
                for name, value in message.get("headers", []):
                    if name.lower() == SESSION_HEADER.encode():
                        opened["sid"] = value.decode("latin-1")
            await send(message)

        try:
            for victim in victims:
                await self._close(victim, scope)
            await _answered(self.app, scope, receive, watch)
        finally:
            self._opening[identity.key] -= 1
            if not self._opening[identity.key]:
                del self._opening[identity.key]
        sid = opened.get("sid")
        if sid and opened.get("status", 500) < 400:
            now = self.clock()
            self._sessions[sid] = _Session(sid, identity.key, now, now, version=version)

    async def _serve(self, session: _Session, method: str, scope: Scope, receive: Receive,
                     send: Send) -> None:
        session.in_flight += 1
        tracker = _Tracker(receive, send)
        try:
            await _answered(self.app, scope, tracker.receive, tracker.send)
        finally:
            session.in_flight -= 1
            session.last_active = self.clock()
        if tracker.status == 404 or (method == "DELETE" and (tracker.status or 500) < 400):
            self._sessions.pop(session.id, None)
        elif tracker.disconnected and not tracker.complete and tracker.request_id is not None:
            # The client went away before its answer: cancel the call, as it would have.
            note = {"jsonrpc": "2.0", "method": "notifications/cancelled",
                    "params": {"requestId": tracker.request_id,
                               "reason": "the client disconnected"}}
            headers = [(SESSION_HEADER.encode(), session.id.encode())]
            if session.version:
                headers.append((VERSION_HEADER.encode(), session.version.encode()))
            log.info("client of MCP session %s went away during request %r; cancelling it",
                     session.id[:8], tracker.request_id)
            await self._internal(scope, "POST", headers, json.dumps(note).encode())


class _Tracker:
    """Watches one request: its JSON-RPC id, whether its answer completed, whether the
    client disconnected first."""

    def __init__(self, receive: Receive, send: Send) -> None:
        self._receive = receive
        self._send = send
        self._body = b""
        self.request_id: Any = None
        self.status: int | None = None
        self.complete = False
        self.disconnected = False

    async def receive(self) -> Message:
        message = await self._receive()
        if message["type"] == "http.request":
            self._body += message.get("body", b"")
            if not message.get("more_body", False):
                self.request_id = _request_id(self._body)
                self._body = b""
        elif message["type"] == "http.disconnect":
            self.disconnected = True
        return message

    async def send(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.status = message["status"]
        elif message["type"] == "http.response.body" and not message.get("more_body", False):
            self.complete = True
        await self._send(message)


def _request_id(body: bytes) -> Any:
    """The id of the JSON-RPC request in a POST body (None for notifications/responses)."""
    try:
        message = json.loads(body)
    except (ValueError, RecursionError):  # deep nesting: the SDK answers it, not us
        return None
    if isinstance(message, dict) and "method" in message and isinstance(
            message.get("id"), str | int) and not isinstance(message.get("id"), bool):
        return message["id"]
    return None


async def _answered(app: ASGIApp, scope: Scope, receive: Receive, send: Send) -> None:
    """Run `app`; if it returns without an answer (the SDK does on some odd requests),
    answer 400 instead of letting the server turn it into a 500."""
    started = False

    async def watch(message: Message) -> None:
        nonlocal started
        if message["type"] == "http.response.start":
            started = True
        await send(message)

    await app(scope, receive, watch)
    if not started:
        await _error("the request could not be served as sent", 400)(scope, receive, send)

