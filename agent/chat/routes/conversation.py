"""The chat page and its conversation endpoints.

GET  /                       the page (history, a running turn, question box or palette)
POST /chat/send              start a turn; answers with the turn's element
GET  /chat/stream/{turn}     that turn's events (SSE): a snapshot, then live; 204 once forgotten
POST /chat/confirm/{call}    confirm or cancel a destructive call of the running turn
POST /chat/stop/{turn}       stop the running turn, and the command it runs
POST /chat/new               forget this identity's conversation

The palette's endpoints are in palette_routes.py, the hosts panel's in host_routes.py.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.types import Receive, Scope, Send

from agent.access.identity import Identity
from agent.mcp.runbooks import offered
from agent.mcp.tools import tools_for

from .. import views, warmup
from ..agent_loop import ChatTurn
from ..confirm_target import preparer
from ..csrf import TOKEN_HEADER
from ..examples import capabilities, examples
from ..palette import palette
from ..prompt import system_prompt
from ..responses import SECURITY_HEADERS, forbidden, html, no_content
from ..sessions import ChatSession
from ..state import ChatState, approve_minutes
from ..turn_stream import turn_events
from ..turn_view import THINKING, Status, status_of
from .hosts import host_panel

if TYPE_CHECKING:
    import anthropic

MAX_QUESTION = 8000
# Open views of one person's running turn (tabs, and reloads not yet noticed as gone).
MAX_STREAMS = 8
CONFIRM_URL = "/chat/confirm/{call}"


@dataclass(frozen=True)
class RunningTurn:
    id: str
    question: str
    status: Status


class _ViewOfTurn(StreamingResponse):
    """A turn's SSE stream that frees its view's place however it ends, also when the
    client went away before the first byte."""

    def __init__(self, events: AsyncIterator[bytes], closed: Callable[[], None]) -> None:
        super().__init__(events, media_type="text/event-stream",
                         headers={**SECURITY_HEADERS, "X-Accel-Buffering": "no"})
        self._closed = closed

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self._closed()


class Chat:
    """The conversation: the page, turns and their streams, confirmations, stop."""

    def __init__(self, state: ChatState) -> None:
        self.state = state
        self.service = state.service
        self._tasks: set[asyncio.Task[None]] = set()
        self._client: asyncio.Future[anthropic.AsyncAnthropic] | None = None
        if state.has_key:
            warmup.start()

    def _start_client(self) -> asyncio.Future[anthropic.AsyncAnthropic]:
        """The app's one Anthropic client, built off the event loop the first time.

        One client for every turn keeps its connections to the API alive between
        turns; building it loads the TLS certificates (~0.1 s), which the page's first
        load starts, so the first question does not wait for it.
        """
        client = self._client
        if client is None or (client.done() and client.exception() is not None):
            client = self._client = asyncio.ensure_future(self._new_client())
        return client

    async def _anthropic(self) -> anthropic.AsyncAnthropic:
        # Shielded: a turn stopped while it waits does not cancel the shared client.
        return await asyncio.shield(self._start_client())

    async def _new_client(self) -> anthropic.AsyncAnthropic:
        await warmup.ready()  # imports the SDK off the event loop, once
        import anthropic

        settings = self.service.settings
        return await asyncio.to_thread(
            anthropic.AsyncAnthropic,
            api_key=settings.anthropic_api_key,
            base_url=settings.anthropic_base_url,
            max_retries=self.state.options.sdk_max_retries,
            timeout=settings.anthropic_timeout,
        )

    async def page(self, request: Request) -> Response:
        identity, session = self.state.session(request)
        if self.state.has_key:
            self._start_client()  # ready before the first question
        settings = self.service.settings
        catalog = self.service.catalog_for(identity)
        hosts = self.service.visible_hosts(identity)
        turn = session.turn
        running = None
        if turn is not None and not turn.finished:
            running = RunningTurn(turn.id, turn.question, status_of(turn.log.events))
        return html(views.page(
            identity=identity,
            mode=views.mode(self.service.mode),
            turns=session.conversation.turns,
            running=running,
            has_key=self.state.has_key,
            model=settings.anthropic_model,
            headers={TOKEN_HEADER: session.token},
            palette=palette(catalog),
            command_count=len(catalog),
            hosts=hosts,
            default_host=self.state.default_host(identity),
            max_question=MAX_QUESTION,
            examples=examples(catalog, hosts, self.state.default_host(identity)),
            capabilities=capabilities(catalog, hosts),
            starters=offered({c.name for c in catalog}) if self.state.has_key else [],
            **host_panel(self.service, identity),
        ))

    async def send(self, request: Request) -> Response:
        checked = await self.state.checked(request)
        if checked is None:
            return forbidden()
        identity, session = checked
        if not self.state.has_key:
            return html(views.message_fragment(
                "error", "Chat needs an Anthropic API key (ANTHROPIC_API_KEY); use the palette."))
        question = (await self.state.form(request)).get("message", "").strip()
        if not question:
            return html("")
        return await self.start_turn(identity, session, question)

    async def start_turn(self, identity: Identity, session: ChatSession,
                         question: str) -> Response:
        """Start a turn for this person's question (the question box, or a runbook starter)."""
        if len(question) > MAX_QUESTION:
            return html(views.message_fragment(
                "error", f"That question is too long ({len(question)} characters; the limit is "
                f"{MAX_QUESTION}). Shorten it and send again."))
        if session.busy and session.turn is not None:
            return html(views.busy_fragment(session.turn.id,
                                            status_of(session.turn.log.events).text))
        token = self.service.identity_tokens.issue(identity)
        # Claude sees only what this person may run: the prompt, the catalog and the tools.
        catalog = self.service.catalog_for(identity)
        mcp_server = self.state.mcp_server
        tool_names = [t.name for t in await mcp_server.list_tools()]
        settings = self.service.settings
        turn = ChatTurn(
            id=secrets.token_hex(8),
            question=question,
            conversation=session.conversation,
            anthropic_client=self._anthropic,
            mcp_server=mcp_server,
            default_host=self.state.default_host(identity),
            system=system_prompt(catalog, self.service.host_views(identity)),
            allowed_tools=frozenset(tools_for(self.service, identity, tool_names)),
            prepare=preparer(self.service, identity),
            identity_token=token,
            options=replace(self.state.options.loop, model=settings.anthropic_model),
            base_url=settings.anthropic_base_url,
        )

        async def run() -> None:
            try:
                await turn.run()
            finally:
                self.service.identity_tokens.revoke(token)

        session.turn = turn
        session.task = asyncio.create_task(run(), name=f"chat-turn-{turn.id}")
        self._tasks.add(session.task)
        session.task.add_done_callback(self._tasks.discard)
        return html(views.turn(turn.id, question, THINKING))

    async def stream(self, request: Request) -> Response:
        if request.headers.get("sec-fetch-site", "same-origin") != "same-origin":
            # Another site could not read the stream, but it has no business opening it.
            return forbidden()
        _, session = self.state.session(request)
        turn = session.turn
        if turn is None or turn.id != request.path_params["turn"]:
            # 204 tells EventSource to stop reconnecting: this turn is over and forgotten.
            return no_content()
        if session.streams >= MAX_STREAMS:
            return Response(
                f"429 Too Many Requests: this answer is already open in {MAX_STREAMS} views. "
                "Close some tabs of the chat page, then reload.\n",
                status_code=429, media_type="text/plain", headers=SECURITY_HEADERS)
        session.streams += 1

        def closed() -> None:
            session.streams -= 1

        return _ViewOfTurn(turn_events(turn, CONFIRM_URL), closed)

    async def confirm(self, request: Request) -> Response:
        checked = await self.state.checked(request)
        if checked is None:
            return forbidden()
        _, session = checked
        form = await self.state.form(request)
        call = request.path_params["call"]
        if session.turn is None or session.turn.decide(
                call, form.get("decision") == "confirm", approve_minutes(form)) is None:
            return html(views.message_fragment(
                "error", "That confirmation is no longer pending."), status_code=409)
        # The stream shows what happens next, in every open view of the turn.
        return no_content()

    async def stop(self, request: Request) -> Response:
        checked = await self.state.checked(request)
        if checked is None:
            return forbidden()
        _, session = checked
        turn, task = session.turn, session.task
        if turn is None or turn.id != request.path_params["turn"] or task is None \
                or task.done():
            return html(views.message_fragment(
                "error", "That answer has already finished."), status_code=409)
        # Cancelling the turn's task cancels its MCP call, and with it the command.
        task.cancel()
        return no_content()

    async def new(self, request: Request) -> Response:
        checked = await self.state.checked(request)
        if checked is None:
            return forbidden()
        identity, _ = checked
        self.state.sessions.reset(identity.key)
        return no_content({"HX-Refresh": "true"})
