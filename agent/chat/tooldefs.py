"""MCP tool definitions as the Anthropic Messages API wants them."""

from __future__ import annotations

from typing import Any

import mcp_types


def anthropic_tool(tool: mcp_types.Tool) -> dict[str, Any]:
    """Same name, description and JSON Schema: Claude sees what any MCP client sees."""
    schema: dict[str, Any] = dict(tool.input_schema or {})
    # The API requires an object schema even for tools without arguments.
    schema.setdefault("type", "object")
    schema.setdefault("properties", {})
    return {
        "name": tool.name,
        "description": tool.description or tool.title or tool.name,
        "input_schema": schema,
    }


def anthropic_tools(tools: list[mcp_types.Tool]) -> list[dict[str, Any]]:
    return [anthropic_tool(t) for t in tools]
