"""The MCP server: tools (tools.py) over the one AgentService, with the result models
(models.py), the caller's identity (context.py) and the confirmation flow for
destructive commands (confirm.py)."""

from .tools import build_mcp_server

__all__ = ["build_mcp_server"]
