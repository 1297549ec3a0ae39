"""`tailnet-agent mcp --stdio`: the MCP server over stdin/stdout (Claude Desktop and similar).

stdout carries the protocol, so everything for the person goes to stderr: the
quick checks of the configured hosts, and a clear line when there is no host.
"""

from __future__ import annotations

from agent.access.identity import local_user_identity
from agent.app import build_service
from agent.mcp import build_mcp_server
from agent.settings import Settings

from .checks import warn_about_hosts


async def run_stdio(settings: Settings) -> None:
    service = build_service(settings, mode="stdio")
    await warn_about_hosts(settings)
    try:
        # Whoever starts us over stdio is the person at this machine.
        server = build_mcp_server(service, stdio_caller=local_user_identity("local-operator"))
        await server.run_stdio_async()
    finally:
        await service.close()
