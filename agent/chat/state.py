"""What every chat endpoint shares: the service, our MCP server, the options, and each
identity's session (agent.chat.sessions), with the checks every POST takes."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from mcp.server.mcpserver import MCPServer
from starlette.requests import Request

from agent.access.identity import Identity
from agent.core.service import AgentService
from agent.web.middleware.identity import request_identity

from .agent_loop import LoopOptions
from .csrf import same_origin
from .history import MAX_BYTES, MAX_TURNS, HistoryStore
from .sessions import ChatSession, Sessions

log = logging.getLogger(__name__)


def approve_minutes(form: dict[str, str]) -> int:
    """The confirm box's "also approve identical calls for" choice (0: this call only)."""
    raw = form.get("minutes", "0")
    return int(raw) if raw.isdigit() and len(raw) <= 4 else 0


@dataclass(frozen=True)
class ChatOptions:
    # The turn loop's options; its model is replaced by ANTHROPIC_MODEL for each turn.
    loop: LoopOptions = field(default_factory=LoopOptions)
    sdk_max_retries: int = 2
    history_turns: int = MAX_TURNS
    history_bytes: int = MAX_BYTES


class ChatState:
    def __init__(self, service: AgentService, mcp_server: MCPServer, options: ChatOptions) -> None:
        self.service = service
        self.mcp_server = mcp_server
        self.options = options
        self.sessions = Sessions(
            HistoryStore(max_turns=options.history_turns, max_bytes=options.history_bytes)
        )

    @property
    def has_key(self) -> bool:
        return bool(self.service.settings.anthropic_api_key)

    def session(self, request: Request) -> tuple[Identity, ChatSession]:
        identity = request_identity(request)
        return identity, self.sessions.get(identity.key)

    async def checked(self, request: Request) -> tuple[Identity, ChatSession] | None:
        """The caller and their session, if this POST came from the page itself."""
        identity, session = self.session(request)
        if not await same_origin(request, session.token):
            log.warning("refused a chat POST to %s from %s: not same-origin (Sec-Fetch-Site=%s)",
                        request.url.path, identity.display,
                        request.headers.get("sec-fetch-site", "absent"))
            return None
        return identity, session

    def default_host(self, identity: Identity) -> str | None:
        """The default host, if this caller may use it."""
        default = self.service.hosts.default
        return default if default in self.service.visible_hosts(identity) else None

    async def form(self, request: Request) -> dict[str, str]:
        form = await request.form()
        return {k: v for k, v in form.items() if isinstance(v, str)}
