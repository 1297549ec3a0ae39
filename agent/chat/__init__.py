"""The chat page: Claude answers questions by calling our MCP tools, streamed with HTMX.

`chat_routes` is all the web app needs: the page at "/", its endpoints under
"/chat/", and the static files (vendored HTMX, CSS, JS) under "/static".
"""

from __future__ import annotations

from pathlib import Path

from mcp.server.mcpserver import MCPServer
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from agent.core.service import AgentService

from .approvals import ApprovalsView
from .routes import Chat, ChatOptions
from .starters import Starters

STATIC = Path(__file__).resolve().parent.parent / "static"

__all__ = ["Chat", "ChatOptions", "chat_routes"]


def chat_routes(
    service: AgentService, mcp_server: MCPServer, options: ChatOptions | None = None
) -> list[BaseRoute]:
    chat = Chat(service, mcp_server, options or ChatOptions())
    runbooks = Starters(chat)
    approvals = ApprovalsView(chat)
    return [
        Route("/chat/runbook", runbooks.start, methods=["POST"]),
        Route("/approvals", approvals.page, methods=["GET"]),
        Route("/approvals/list", approvals.listing, methods=["GET"]),
        Route("/approvals/{request}", approvals.decide, methods=["POST"]),
        Route("/", chat.page, methods=["GET"]),
        Route("/chat/send", chat.send, methods=["POST"]),
        Route("/chat/stream/{turn}", chat.stream, methods=["GET"]),
        Route("/chat/confirm/{call}", chat.confirm, methods=["POST"]),
        Route("/chat/run", chat.run_command, methods=["POST"]),
        Route("/chat/run/{pending}", chat.run_confirmed, methods=["POST"]),
        Route("/chat/new", chat.new, methods=["POST"]),
        Mount("/static", app=StaticFiles(directory=STATIC), name="static"),
    ]
