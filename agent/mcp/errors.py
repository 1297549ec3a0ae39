"""Failures of a tool call as MCP tool errors, mapped in one place.

httpx maps its transport's exceptions to its own in one module (`_exceptions.py`,
`map_exceptions`); this is ours. Tool bodies and resolvers let the service's exceptions
propagate; `AgentMCPServer.call_tool` hands whatever a call failed with to `tool_error`,
which turns a failure the caller can act on into the tool error (`isError`) that says
what is allowed, and a call the SDK refused before any of our code ran (its arguments
against the schema, an unknown tool) into our own message. Anything else stays the
SDK's generic error: its text never reaches the caller.
"""

from __future__ import annotations

from mcp.server.mcpserver.exceptions import ToolError, UnexpectedToolError
from pydantic import ValidationError

from agent.errors import CallRefused, ConfigError, HostError
from whitelist import WhitelistError
from whitelist.errors import shown

# What a tool call can fail with that the caller can act on: shown as a tool error.
CALL_ERRORS = (WhitelistError, ConfigError, HostError, CallRefused)


def tool_error(tool: str, exc: ToolError) -> ToolError | None:
    """The tool error for a failure of ours inside the tool (or one of its resolvers),
    with the message the SDK gives a deliberate tool error; None for anything else."""
    cause = exc.__cause__
    if isinstance(exc, UnexpectedToolError) and isinstance(cause, CALL_ERRORS):
        return ToolError(f"Error executing tool {tool}: {cause}")
    return None


def sdk_refusal(tool: str, exc: ToolError) -> str | None:
    """Our message for a call the SDK refused before the tool ran (None: not such a call):
    what was wrong, no pydantic help links, no 100 KB echo."""
    cause = exc.__cause__
    if isinstance(cause, ValidationError):
        problems = []
        for error in cause.errors(include_url=False)[:5]:
            where = ".".join(str(part) for part in error["loc"]) or "(arguments)"
            problems.append(f"{shown(where, 60)}: {error['msg']}")
        more = f" (and {cause.error_count() - 5} more)" if cause.error_count() > 5 else ""
        return (f"invalid arguments for tool {shown(tool, 64)}: {'; '.join(problems)}{more}. "
                "See the tool's input schema (tools/list).")
    if unknown_tool(exc):
        return f"unknown tool {shown(tool, 64)}; tools/list shows the tools you can use"
    return None


def unknown_tool(exc: ToolError) -> bool:
    return exc.__cause__ is None and str(exc).startswith("Unknown tool: ")
