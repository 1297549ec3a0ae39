"""Who is calling a tool, the service behind the server, and calls refused before our tools.

Every tool call passes `AgentMCPServer.call_tool`, which maps its failure in one place
(agent/mcp/errors.py): our exceptions become the tool errors that say what is allowed,
and a call the SDK refused before any of our code ran (the arguments against the tool's
schema, an unknown tool) is audited and charged to the caller's rate like any other
refusal, with our message.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from mcp.server.lowlevel.helper_types import ReadResourceContents
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp_types import CallToolResult, InputRequiredResult
from pydantic import AnyUrl

from agent.access.identity import Identity
from agent.core.service import AgentService
from agent.errors import NoCallerIdentity
from agent.web.middleware.identity import request_identity
from whitelist.errors import shown

from .errors import sdk_refusal, tool_error, unknown_tool
from .resources import read_for_caller

# The chat's in-process client names its user with a token under this `_meta` key.
IDENTITY_META_KEY = "tailnet-agent/identity"

NO_CALLER = (
    "this call carries no caller identity (no HTTP request, no chat token), so it was "
    "refused; connect over the agent's HTTP endpoint or its chat page"
)


class AgentMCPServer(MCPServer):
    """The SDK server, plus the service its module-level resolvers reach through `ctx`."""

    def __init__(self, name: str, service: AgentService, *, stdio_caller: Identity | None,
                 **options: Any) -> None:
        super().__init__(name, **options)
        self.service = service
        # Over stdio the caller is the person who started us; nowhere else is there a
        # default.
        self.stdio_caller = stdio_caller

    def caller(self, ctx: Context) -> Identity:
        """The identity behind a tool call.

        Over HTTP it is what IdentityMiddleware resolved for the request. With no HTTP
        request, an identity token in `_meta` names the chat's user; over stdio it is the
        local user who started us. Anything else is refused (fail closed).
        """
        rc = ctx.request_context
        if rc.request is not None:
            return request_identity(rc.request)
        meta = rc.meta or {}
        if isinstance(meta, dict):
            token = meta.get(IDENTITY_META_KEY)
        else:
            token = getattr(meta, IDENTITY_META_KEY, None)
        identity = self.service.identity_tokens.resolve(token) or self.stdio_caller
        if identity is None:
            raise NoCallerIdentity(NO_CALLER)
        return identity

    async def call_tool(
        self, name: str, arguments: dict[str, Any], context: Context[Any, Any] | None = None
    ) -> CallToolResult | InputRequiredResult:
        try:
            return await super().call_tool(name, arguments, context)
        except ToolError as exc:
            mapped = tool_error(name, exc)
            if mapped is not None:
                raise mapped from exc.__cause__
            message = sdk_refusal(name, exc)
            if message is None or context is None:
                raise
            try:
                identity = self.caller(context)
            except NoCallerIdentity:
                raise ToolError(NO_CALLER) from None
            if unknown_tool(exc) and any(
                    c.name == name for c in self.service.visible_commands(identity)):
                message = (f"{name} is a catalog command, not a tool: run it with "
                           f"execute_command (command: {name!r})")
            command = arguments.get("command") if name == "execute_command" else None
            host = arguments.get("host")
            refusal = self.service.refused(
                identity, tool=name if len(name) <= 64 else shown(name, 64),
                arguments=arguments, error=message,
                command=command if isinstance(command, str) else None,
                host=host if isinstance(host, str) else None)
            raise ToolError(refusal.message) from None

    async def read_resource(
        self, uri: AnyUrl | str, context: Context | None = None
    ) -> Iterable[ReadResourceContents] | InputRequiredResult:
        """Our resources answer with the caller's own view (agent/mcp/resources.py)."""
        if context is not None and context._request_context is not None:
            text = read_for_caller(self.service, str(uri), caller(context))
            if text is not None:
                return [ReadResourceContents(content=text, mime_type="application/json")]
        return await super().read_resource(uri, context)


def service_of(ctx: Context) -> AgentService:
    return server_of(ctx).service


def server_of(ctx: Context) -> AgentMCPServer:
    server = ctx.mcp_server
    assert isinstance(server, AgentMCPServer)
    return server


def caller(ctx: Context) -> Identity:
    """The identity behind a tool call (see AgentMCPServer.caller); a tool raises a tool
    error when there is none."""
    try:
        return server_of(ctx).caller(ctx)
    except NoCallerIdentity as exc:
        raise ToolError(str(exc)) from None

