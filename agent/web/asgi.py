"""The HTTP app: MCP at /mcp, the chat page, and /healthz, /readyz, /metrics (health.py),
behind the identity gate; and the local operator's app on a unix socket.

Request path, outermost first: HostOriginMiddleware (is this request addressed to
one of our names?), the response counter (metrics), IdentityMiddleware (who is
calling? nobody vouches -> 403), BodyLimitMiddleware (413 over 1 MiB on /mcp, 64 KiB
elsewhere), then the routes; /mcp goes through SessionGuard (sessions owned and capped
per identity, calls of vanished clients cancelled) to the SDK's endpoint.
The MCP SDK's own Host check is switched off because ours
covers every route with the node's tailnet names, which the SDK cannot know.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterable, Sequence

from mcp.server.mcpserver import MCPServer
from mcp.server.transport_security import TransportSecuritySettings
from starlette.applications import Starlette
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp

from agent.access.identity import local_user_identity
from agent.core.readiness import ReadinessCheck
from agent.core.service import AgentService
from agent.settings import Settings
from agent.web.middleware.body_limit import BodyLimitMiddleware
from agent.web.middleware.host_origin import HostOriginMiddleware
from agent.web.middleware.identity import IdentityMiddleware, IdentityResolver, fixed_resolver

from .health import health_routes
from .mcp_sessions import SessionGuard, SessionLimits
from .prometheus import AgentMetrics

# The SDK takes up to 4 MiB per MCP message; our tool arguments are a few KiB.
MCP_BODY_LIMIT = 1024 * 1024
# Chat POSTs carry a question (at most 8000 characters) or a palette form.
CHAT_BODY_LIMIT = 64 * 1024


def _mcp_route(mcp: MCPServer, settings: Settings) -> tuple[BaseRoute, SessionGuard]:
    limits = SessionLimits(per_identity=settings.mcp_sessions_per_identity,
                           total=settings.mcp_max_sessions,
                           idle_timeout=settings.mcp_session_idle)
    sdk_app = mcp.streamable_http_app(
        transport_security=TransportSecuritySettings(enable_dns_rebinding_protection=False),
        session_idle_timeout=limits.idle_timeout,
        # Ours is the cap that counts (SessionGuard); the SDK's is a backstop above it.
        max_sessions=limits.total + 16,
        max_request_body_size=MCP_BODY_LIMIT,
    )
    for route in sdk_app.routes:
        if isinstance(route, Route) and route.path == "/mcp":
            guard = SessionGuard(route.app, limits)
            return Route("/mcp", endpoint=guard), guard
    raise RuntimeError("the MCP SDK app has no /mcp route; has its layout changed?")


def build_http_app(
    service: AgentService,
    mcp: MCPServer,
    *,
    resolver: IdentityResolver,
    allowed_names: Iterable[str],
    readiness: ReadinessCheck,
    metrics: AgentMetrics,
    extra_routes: Sequence[BaseRoute] = (),
) -> tuple[HostOriginMiddleware, SessionGuard]:
    """Return the ASGI app (call `.allow(names)` on it to add names learned later) and
    the guard that owns and caps its MCP sessions."""

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with mcp.session_manager.run():
            yield

    mcp_route, sessions = _mcp_route(mcp, service.settings)
    routes: list[BaseRoute] = [
        mcp_route,
        *health_routes(service, readiness, metrics),
        *extra_routes,
    ]
    app = Starlette(routes=routes, lifespan=lifespan)
    limited = BodyLimitMiddleware(app, [("/mcp", MCP_BODY_LIMIT)], default=CHAT_BODY_LIMIT)
    counted = metrics.count_responses(IdentityMiddleware(limited, resolver))
    return HostOriginMiddleware(counted, allowed_names), sessions


def build_ops_app(
    service: AgentService, readiness: ReadinessCheck, metrics: AgentMetrics
) -> ASGIApp:
    """/healthz, /readyz and /metrics for the local socket (TAILNET_AGENT_SOCKET).

    Whoever can open the socket (mode 0600: this user, or root) is the local operator,
    as with tailscaled's own LocalAPI socket. Nothing else is served there, and no
    browser can reach a unix socket, so no Host/Origin check is needed.
    """
    app = Starlette(routes=health_routes(service, readiness, metrics))
    return IdentityMiddleware(app, fixed_resolver(local_user_identity("local-operator")))
