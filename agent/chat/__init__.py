"""The chat page: Claude answers questions by calling our MCP tools, streamed with HTMX.

`chat_routes` is all the web app needs: the page at "/", its endpoints under
"/chat/", and the static files (vendored HTMX, CSS, JS) under "/static". `warmed_up`
returns once the Anthropic SDK's warm-up is over (the serve commands wait for it before
"Ready.").
"""

from __future__ import annotations

from pathlib import Path

from mcp.server.mcpserver import MCPServer
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from agent.chat.routes.approvals import ApprovalsView
from agent.chat.routes.conversation import Chat
from agent.chat.routes.hosts import Hosts
from agent.chat.routes.palette import Palette
from agent.chat.routes.replay import ReplayView
from agent.chat.routes.shares import ShareView
from agent.chat.routes.starters import Starters
from agent.core.service import AgentService

from .state import ChatOptions, ChatState
from .warmup import settled as warmed_up

STATIC = Path(__file__).resolve().parent / "static"

__all__ = ["Chat", "ChatOptions", "chat_routes", "warmed_up"]


def chat_routes(
    service: AgentService, mcp_server: MCPServer, options: ChatOptions | None = None
) -> list[BaseRoute]:
    state = ChatState(service, mcp_server, options or ChatOptions())
    chat, palette, hosts = Chat(state), Palette(state), Hosts(state)
    runbooks, approvals = Starters(state, chat), ApprovalsView(state)
    replay, shares = ReplayView(service), ShareView(state)
    return [
        Route("/chat/share/{turn}", shares.create, methods=["POST"]),
        Route("/share/{share}", shares.page, methods=["GET"]),
        Route("/audit/{call}/replay", replay.page, methods=["GET"]),
        Route("/audit/{call}/cast", replay.cast, methods=["GET"]),
        Route("/chat/runbook", runbooks.start, methods=["POST"]),
        Route("/approvals", approvals.page, methods=["GET"]),
        Route("/approvals/list", approvals.listing, methods=["GET"]),
        Route("/approvals/{request}", approvals.decide, methods=["POST"]),
        Route("/", chat.page, methods=["GET"]),
        Route("/chat/send", chat.send, methods=["POST"]),
        Route("/chat/stream/{turn}", chat.stream, methods=["GET"]),
        Route("/chat/confirm/{call}", chat.confirm, methods=["POST"]),
        Route("/chat/stop/{turn}", chat.stop, methods=["POST"]),
        Route("/chat/new", chat.new, methods=["POST"]),
        Route("/chat/run", palette.run, methods=["POST"]),
        Route("/chat/run/{pending}", palette.confirmed, methods=["POST"]),
        Route("/chat/hosts", hosts.list, methods=["GET"]),
        Route("/chat/hosts/check", hosts.check, methods=["POST"]),
        Mount("/static", app=StaticFiles(directory=STATIC), name="static"),
    ]
