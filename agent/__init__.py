"""tailnet-agent: whitelisted remote commands for Claude and MCP clients, over a tailnet."""

__version__ = "0.1.0"
