"""Who is calling a tool, and the service behind the server, from an MCP request context."""

from __future__ import annotations

from collections.abc import Iterable

from mcp.server.lowlevel.helper_types import ReadResourceContents
from mcp.server.mcpserver import Context, MCPServer
from mcp_types import InputRequiredResult
from pydantic import AnyUrl

from agent.core.identity import Identity, local_user_identity
from agent.core.service import AgentService
from agent.web.middleware.identity import request_identity

from .resources import read_for_caller

# The chat's in-process client names its user with a token under this `_meta` key.
IDENTITY_META_KEY = "tailnet-agent/identity"


class AgentMCPServer(MCPServer):
    """The SDK server, plus the service its module-level resolvers reach through `ctx`."""

    service: AgentService

    async def read_resource(
        self, uri: AnyUrl | str, context: Context | None = None
    ) -> Iterable[ReadResourceContents] | InputRequiredResult:
        """Our resources answer with the caller's own view (agent/mcp/resources.py)."""
        if context is not None and context._request_context is not None:
            text = read_for_caller(self.service, str(uri), caller(self.service, context))
            if text is not None:
                return [ReadResourceContents(content=text, mime_type="application/json")]
        return await super().read_resource(uri, context)


def service_of(ctx: Context) -> AgentService:
    server = ctx.mcp_server
    assert isinstance(server, AgentMCPServer)
    return server.service


def caller(service: AgentService, ctx: Context) -> Identity:
    """The identity behind a tool call.

    Over HTTP it is what IdentityMiddleware resolved for the request. With no HTTP
    request (stdio, or the chat's in-process client) an identity token in `_meta`
    names the chat user; otherwise the caller is the local user who started us.
    """
    rc = ctx.request_context
    if rc.request is not None:
        return request_identity(rc.request)
    meta = rc.meta or {}
    if isinstance(meta, dict):
        token = meta.get(IDENTITY_META_KEY)
    else:
        token = getattr(meta, IDENTITY_META_KEY, None)
    return service.identity_tokens.resolve(token) or local_user_identity("local-operator")
