"""How the chat calls our own MCP tools: through an in-process MCP client connected to
the same `MCPServer` remote clients use, so every call takes the same checks.

The caller's identity travels as an unguessable token in the call's `_meta`
(agent.mcp.context.caller); a destructive call is confirmed by answering the
server's elicitation, and only after the person's click.
"""

from __future__ import annotations

import json
import time
from typing import Any, cast

import mcp
import mcp_types
from mcp.client.session import ClientRequestContext
from mcp.server.mcpserver import MCPServer

from agent.access.identity import Identity
from agent.core.service import AgentService
from agent.mcp.context import IDENTITY_META_KEY

from .cards import ToolCard, cards_for, result_text

# Claude reads tool output; a 1 MB log would cost a fortune and drown the answer.
MODEL_OUTPUT_LIMIT = 16_000


def identity_meta(token: str) -> mcp_types.RequestParamsMeta:
    """The call's `_meta`: names the chat user to our MCP server (agent.mcp.context.caller)."""
    return cast(mcp_types.RequestParamsMeta, {IDENTITY_META_KEY: token})


def accept_confirmation(params: mcp_types.ElicitRequestParams,
                        minutes: int = 0) -> mcp_types.ElicitResult:
    """Accept a confirmation form: every yes/no field answered yes, identical calls approved
    for the `minutes` the person chose (within the form's bound), nothing else filled in."""
    if not isinstance(params, mcp_types.ElicitRequestFormParams):
        return mcp_types.ElicitResult(action="decline")
    properties = params.requested_schema.get("properties", {})
    content: dict[str, str | int | float | bool | list[str] | None] = {
        name: True for name, spec in properties.items()
        if isinstance(spec, dict) and spec.get("type") == "boolean"
    }
    bound = properties.get("approve_minutes", {}).get("maximum")
    if minutes > 0 and isinstance(bound, int):
        content["approve_minutes"] = min(minutes, bound)
    return mcp_types.ElicitResult(action="accept", content=content)


def _clip(text: str) -> str:
    if len(text) <= MODEL_OUTPUT_LIMIT:
        return text
    cut = len(text) - MODEL_OUTPUT_LIMIT
    return text[:MODEL_OUTPUT_LIMIT] + f"\n[... {cut} more characters not shown to the model]"


def _clip_rows(rows: list[Any]) -> list[Any]:
    """A command's rows (`data`), as many as fit in MODEL_OUTPUT_LIMIT characters of JSON."""
    kept: list[Any] = []
    size = 0
    for row in rows:
        size += len(json.dumps(row, ensure_ascii=False)) + 2
        if size > MODEL_OUTPUT_LIMIT:
            return [*kept, f"[... {len(rows) - len(kept)} more rows not shown to the model]"]
        kept.append(row)
    return kept


def _clip_result(data: Any) -> Any:
    if isinstance(data, dict):
        return {
            k: _clip(v) if k in ("stdout", "stderr") and isinstance(v, str)
            else _clip_rows(v) if k == "data" and isinstance(v, list) else _clip_result(v)
            for k, v in data.items()
        }
    if isinstance(data, list):
        return [_clip_result(v) for v in data]
    return data


def tool_result_for_model(result: mcp_types.CallToolResult) -> str:
    if result.structured_content is not None and not result.is_error:
        return json.dumps(_clip_result(result.structured_content), ensure_ascii=False)
    return _clip(result_text(result))


async def run_catalog_command(
    service: AgentService, mcp_server: MCPServer, identity: Identity, name: str,
    arguments: dict[str, Any], host: str | None, *, confirmed: str | None = None,
    minutes: int = 0,
) -> list[ToolCard]:
    """One catalog command run by a click (the palette, the hosts panel's check): the same
    `execute_command` tool Claude and MCP clients use. `confirmed`: the question the
    person's click answered (PreparedCall.question); the one elicitation that asks exactly
    it is accepted, any other is declined."""
    accepted = False

    async def elicit(context: ClientRequestContext,
                     params: mcp_types.ElicitRequestParams) -> mcp_types.ElicitResult:
        nonlocal accepted
        # One confirmation click accepts one elicitation, for this call only.
        if confirmed is None or accepted or params.message != confirmed:
            return mcp_types.ElicitResult(action="decline")
        accepted = True
        return accept_confirmation(params, minutes)

    token = service.identity_tokens.issue(identity)
    try:
        async with mcp.Client(mcp_server, mode="legacy", elicitation_callback=elicit) as client:
            args: dict[str, Any] = {"command": name, "parameters": arguments}
            if host:
                args["host"] = host
            started = time.monotonic()
            result = await client.call_tool("execute_command", args, meta=identity_meta(token))
            elapsed = (time.monotonic() - started) * 1000
    finally:
        service.identity_tokens.revoke(token)
    return cards_for("execute_command", result, host=host or "", elapsed_ms=elapsed)
