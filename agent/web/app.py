"""The HTTP app: MCP at /mcp, /healthz, and the chat page, behind the identity gate.

Request path, outermost first: HostOriginMiddleware (is this request addressed to
one of our names?), IdentityMiddleware (who is calling? nobody vouches -> 403),
BodyLimitMiddleware (413 over 1 MiB on /mcp, 64 KiB elsewhere), then the routes.
The MCP SDK's own Host check is switched off because ours
covers every route with the node's tailnet names, which the SDK cannot know.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterable, Sequence
from typing import Any

from mcp.server.mcpserver import MCPServer
from mcp.server.transport_security import TransportSecuritySettings
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import BaseRoute, Route

from agent.core.service import AgentService

from .middleware.body_limit import BodyLimitMiddleware
from .middleware.host_origin import HostOriginMiddleware
from .middleware.identity import IdentityMiddleware, IdentityResolver, request_identity

# The SDK takes up to 4 MiB per MCP message; our tool arguments are a few KiB.
MCP_BODY_LIMIT = 1024 * 1024
# Chat POSTs carry a question (at most 8000 characters) or a palette form.
CHAT_BODY_LIMIT = 64 * 1024


def _mcp_route(mcp: MCPServer) -> BaseRoute:
    sdk_app = mcp.streamable_http_app(
        transport_security=TransportSecuritySettings(enable_dns_rebinding_protection=False),
    )
    for route in sdk_app.routes:
        if getattr(route, "path", None) == "/mcp":
            return route
    raise RuntimeError("the MCP SDK app has no /mcp route; has its layout changed?")


def build_http_app(
    service: AgentService,
    mcp: MCPServer,
    *,
    resolver: IdentityResolver,
    allowed_names: Iterable[str],
    extra_routes: Sequence[BaseRoute] = (),
) -> HostOriginMiddleware:
    """Return the ASGI app; call `.allow(names)` on it to add names learned later."""

    async def healthz(request: Request) -> JSONResponse:
        status: dict[str, Any] = {"status": "ok", "mode": service.mode}
        if service.tailnet_status is not None:
            tailnet = await service.tailnet_status()
            status["tailnet"] = tailnet
            if tailnet.get("state") != "Running":
                status["status"] = "degraded"
        status["you"] = request_identity(request).display
        return JSONResponse(status, status_code=200 if status["status"] == "ok" else 503)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with mcp.session_manager.run():
            yield

    routes: list[BaseRoute] = [
        _mcp_route(mcp),
        Route("/healthz", healthz, methods=["GET"]),
        *extra_routes,
    ]
    app = Starlette(routes=routes, lifespan=lifespan)
    limited = BodyLimitMiddleware(app, [("/mcp", MCP_BODY_LIMIT)], default=CHAT_BODY_LIMIT)
    return HostOriginMiddleware(IdentityMiddleware(limited, resolver), allowed_names)
