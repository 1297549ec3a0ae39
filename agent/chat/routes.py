"""The chat page's HTTP endpoints.

GET  /                       the page (history, question box or palette)
POST /chat/send              start a turn; answers with the turn's element
GET  /chat/stream/{turn}     that turn's events (SSE); 204 once it is over
POST /chat/confirm/{call}    confirm or cancel a destructive call of the running turn
POST /chat/run               palette: run one catalog command directly
POST /chat/run/{pending}     palette: confirm or cancel a destructive command
POST /chat/new               forget this identity's conversation
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import mcp
import mcp_types
from mcp.client.session import ClientRequestContext
from mcp.server.mcpserver import MCPServer
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response, StreamingResponse

from agent.core.errors import ConfigError
from agent.core.identity import Identity
from agent.core.service import AgentService
from agent.mcp.runbooks import offered
from agent.mcp.tools import tools_for
from agent.web.middleware.identity import request_identity
from whitelist import WhitelistError, render

from . import views
from .agent_loop import ChatTurn, LoopOptions, TurnFinished, accept_confirmation, identity_meta
from .cards import ToolCard, cards_for, declined_card
from .csrf import TOKEN_HEADER, same_origin
from .history import MAX_BYTES, MAX_TURNS, HistoryStore
from .palette import PARAM_PREFIX, arguments_from_form, palette
from .prompt import system_prompt
from .sessions import ChatSession, PendingRun, Sessions

if TYPE_CHECKING:
    import anthropic

log = logging.getLogger(__name__)

MAX_QUESTION = 8000

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
    "img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


def html(content: str, status_code: int = 200, headers: dict[str, str] | None = None) -> Response:
    return HTMLResponse(content, status_code, headers={**SECURITY_HEADERS, **(headers or {})})


def approve_minutes(form: dict[str, str]) -> int:
    """The confirm box's "also approve identical calls for" choice (0: this call only)."""
    raw = form.get("minutes", "0")
    return int(raw) if raw.isdigit() and len(raw) <= 4 else 0


def forbidden() -> Response:
    return Response(
        "403 Forbidden: this request did not come from the chat page itself "
        "(cross-site or without the page's token), so it was refused. Reload the page and "
        "use its controls.\n",
        status_code=403,
        media_type="text/plain",
        headers=SECURITY_HEADERS,
    )


@dataclass(frozen=True)
class ChatOptions:
    # The turn loop's options; its model is replaced by ANTHROPIC_MODEL for each turn.
    loop: LoopOptions = field(default_factory=LoopOptions)
    sdk_max_retries: int = 2
    history_turns: int = MAX_TURNS
    history_bytes: int = MAX_BYTES


class Chat:
    def __init__(self, service: AgentService, mcp_server: MCPServer, options: ChatOptions) -> None:
        self.service = service
        self.mcp_server = mcp_server
        self.options = options
        self.sessions = Sessions(
            HistoryStore(max_turns=options.history_turns, max_bytes=options.history_bytes)
        )
        self._tasks: set[asyncio.Task[None]] = set()

    # -- helpers ---------------------------------------------------------------------------

    @property
    def has_key(self) -> bool:
        return bool(self.service.settings.anthropic_api_key)

    def _anthropic(self) -> anthropic.AsyncAnthropic:
        import anthropic  # only when a chat turn needs it: see agent_loop.py

        settings = self.service.settings
        return anthropic.AsyncAnthropic(
            api_key=settings.anthropic_api_key,
            base_url=settings.anthropic_base_url,
            max_retries=self.options.sdk_max_retries,
            timeout=settings.anthropic_timeout,
        )

    def _session(self, request: Request) -> tuple[Identity, ChatSession]:
        identity = request_identity(request)
        return identity, self.sessions.get(identity.key)

    async def _checked(self, request: Request) -> tuple[Identity, ChatSession] | None:
        identity, session = self._session(request)
        if not await same_origin(request, session.token):
            log.warning("refused a chat POST to %s from %s: not same-origin (Sec-Fetch-Site=%s)",
                        request.url.path, identity.display,
                        request.headers.get("sec-fetch-site", "absent"))
            return None
        return identity, session

    def _approved(self, identity: Identity, host: str | None, rendered: str) -> bool:
        """Whether a time-limited approval covers this call (then nobody is asked)."""
        try:
            target = self.service.host(host or None, identity).name
        except ConfigError:
            return False
        return self.service.approvals.find(identity, target, rendered) is not None
    def _default_host(self, identity: Identity) -> str | None:
        default = self.service.hosts.default
        return default if default in self.service.visible_hosts(identity) else None

    async def _form(self, request: Request) -> dict[str, str]:
        form = await request.form()
        return {k: v for k, v in form.items() if isinstance(v, str)}

    # -- endpoints -------------------------------------------------------------------------

    async def page(self, request: Request) -> Response:
        identity, session = self._session(request)
        settings = self.service.settings
        return html(views.page(
            identity=identity,
            items=session.conversation.items(),
            has_key=self.has_key,
            model=settings.anthropic_model,
            headers={TOKEN_HEADER: session.token},
            palette=palette(self.service.catalog_for(identity)),
            hosts=sorted(self.service.visible_hosts(identity)),
            default_host=self._default_host(identity),
            max_question=MAX_QUESTION,
            busy=session.busy,
            starters=offered({c.name for c in self.service.visible_commands(identity)}),
        ))

    async def send(self, request: Request) -> Response:
        checked = await self._checked(request)
        if checked is None:
            return forbidden()
        identity, session = checked
        if not self.has_key:
            return html(views.message_fragment(
                "error", "Chat needs an Anthropic API key (ANTHROPIC_API_KEY); use the palette."))
        question = (await self._form(request)).get("message", "").strip()
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
        if session.busy:
            return html(views.message_fragment(
                "error", "Claude is still answering your previous question; wait for it to "
                "finish (or start a new chat)."))
        token = self.service.identity_tokens.issue(identity)
        # Claude sees only what this person may run: the prompt, the catalog and the tools.
        catalog = self.service.catalog_for(identity)
        tool_names = [t.name for t in await self.mcp_server.list_tools()]
        turn = ChatTurn(
            id=secrets.token_hex(8),
            question=question,
            conversation=session.conversation,
            anthropic_client=self._anthropic(),
            mcp_server=self.mcp_server,
            catalog=catalog,
            default_host=self._default_host(identity),
            system=system_prompt(catalog, self.service.host_views(identity)),
            allowed_tools=frozenset(tools_for(self.service, identity, tool_names)),
            approved=lambda host, rendered: self._approved(identity, host, rendered),
            runs_as=lambda command, host: self.service.runs_as(command, host or None),
            fanout_plan=lambda command, arguments, hosts: self.service.plan_fanout(
                command, arguments, hosts, identity),
            identity_token=token,
            options=replace(self.options.loop, model=self.service.settings.anthropic_model),
            base_url=self.service.settings.anthropic_base_url,
            refused=lambda command, arguments, host, error: self.service.refused(
                identity, tool="execute_command", command=command, host=host or None,
                arguments=arguments, error=error),
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
        return html(views.turn_start(turn.id, question))

    async def stream(self, request: Request) -> Response:
        if request.headers.get("sec-fetch-site", "same-origin") != "same-origin":
            # Another site could not read the stream, but reading it would take the
            # events away from the page they belong to.
            return forbidden()
        _, session = self._session(request)
        turn = session.turn
        if turn is None or turn.id != request.path_params["turn"] or (
            turn.finished and turn.events.empty()
        ):
            # 204 tells EventSource to stop reconnecting: this turn is over.
            return Response(status_code=204, headers=SECURITY_HEADERS)
        renderer = views.StreamRenderer(confirm_url="/chat/confirm/{call}")

        async def events() -> AsyncIterator[bytes]:
            yield b": stream open\n\n"
            while True:
                event = await turn.events.get()
                yield renderer.render(event)
                if isinstance(event, TurnFinished):
                    return

        return StreamingResponse(
            events(),
            media_type="text/event-stream",
            headers={**SECURITY_HEADERS, "X-Accel-Buffering": "no"},
        )

    async def confirm(self, request: Request) -> Response:
        checked = await self._checked(request)
        if checked is None:
            return forbidden()
        _, session = checked
        form = await self._form(request)
        call = request.path_params["call"]
        if session.turn is None or session.turn.decide(
                call, form.get("decision") == "confirm", approve_minutes(form)) is None:
            return html(views.message_fragment(
                "error", "That confirmation is no longer pending."), status_code=409)
        # The stream shows what happens next; a swap here could race with it.
        return Response(status_code=204, headers=SECURITY_HEADERS)

    async def new(self, request: Request) -> Response:
        checked = await self._checked(request)
        if checked is None:
            return forbidden()
        identity, _ = checked
        self.sessions.reset(identity.key)
        return Response(status_code=204, headers={**SECURITY_HEADERS, "HX-Refresh": "true"})

    async def run_command(self, request: Request) -> Response:
        checked = await self._checked(request)
        if checked is None:
            return forbidden()
        identity, session = checked
        form = await self._form(request)
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
                                              command=name, error=error)]))
        # A command the policy refuses is not worth a confirmation click: run it, and
        # the refusal (recorded in the audit log) comes back as the card.
        if (command.destructive and self.service.policy.visible(identity, command)
                and not self._approved(identity, host, rendered)):
            pending = secrets.token_hex(8)
            session.add_pending(pending, PendingRun(name, arguments, host, rendered))
            return html(views.confirm(f"run-{pending}", host or "", name, rendered,
                                      f"/chat/run/{pending}", replace_self=True,
                                      runs_as=self.service.runs_as(command, host)))
        cards = await self._execute(identity, name, arguments, host, confirmed=False)
        return html(views.cards(cards))

    async def run_confirmed(self, request: Request) -> Response:
        checked = await self._checked(request)
        if checked is None:
            return forbidden()
        identity, session = checked
        pending = session.take_pending(request.path_params["pending"])
        if pending is None:
            return html(views.message_fragment("error", "That command is no longer pending."))
        form = await self._form(request)
        if form.get("decision") != "confirm":
            return html(views.cards([declined_card("execute_command", pending.host or "",
                                                   pending.rendered, command=pending.command)]))
        cards = await self._execute(identity, pending.command, pending.arguments, pending.host,
                                    confirmed=True, minutes=approve_minutes(form))
        return html(views.cards(cards))

    async def _execute(self, identity: Identity, name: str, arguments: dict[str, Any],
                       host: str | None, *, confirmed: bool, minutes: int = 0
                       ) -> list[ToolCard]:
        """The palette's call: the same `execute_command` tool Claude and MCP clients use."""
        accepted = False

        async def elicit(context: ClientRequestContext,
                         params: mcp_types.ElicitRequestParams) -> mcp_types.ElicitResult:
            nonlocal accepted
            # One confirmation click accepts one elicitation, for this call only.
            if not confirmed or accepted:
                return mcp_types.ElicitResult(action="decline")
            accepted = True
            return accept_confirmation(params, minutes)

        token = self.service.identity_tokens.issue(identity)
        try:
            async with mcp.Client(self.mcp_server, mode="legacy",
                                  elicitation_callback=elicit) as client:
                args: dict[str, Any] = {"command": name, "parameters": arguments}
                if host:
                    args["host"] = host
                started = time.monotonic()
                result = await client.call_tool("execute_command", args,
                                                meta=identity_meta(token))
                elapsed = (time.monotonic() - started) * 1000
        finally:
            self.service.identity_tokens.revoke(token)
        return cards_for("execute_command", result, host=host or "", elapsed_ms=elapsed)
