"""The runbooks (runbooks.py) as MCP prompts, written for the caller who asks."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import Annotated

from mcp.server.mcpserver import Context, MCPServer
from mcp.shared.exceptions import MCPError
from mcp_types import INVALID_PARAMS
from pydantic import Field

from agent.core.service import AgentService
from agent.errors import ConfigError
from whitelist.param_types import UNIT_PATTERN

from .context import caller
from .runbooks import RUNBOOKS, Runbook, render

HostArgument = Annotated[str, Field(description="Host name from list_hosts; empty for the "
                                    "default host.")]


def runbook_text(service: AgentService, ctx: Context, runbook: Runbook, host: str,
                 unit: str = "") -> str:
    identity = caller(ctx)
    try:
        target = service.host(host or None, identity).name
    except ConfigError as exc:
        raise MCPError(INVALID_PARAMS, str(exc)) from None
    if unit and not re.fullmatch(UNIT_PATTERN, unit):
        raise MCPError(INVALID_PARAMS, f"{unit[:80]!r} is not a systemd unit name "
                       "(like nginx or nginx.service)")
    visible = {c.name for c in service.visible_commands(identity)}
    return render(runbook, host=target, unit=unit, may_run=visible.__contains__)


def _prompt(service: AgentService, runbook: Runbook) -> Callable[..., Awaitable[str]]:
    if runbook.needs_unit:
        async def with_unit(
            ctx: Context,
            unit: Annotated[str, Field(description="The systemd unit, e.g. nginx.service")],
            host: HostArgument = "",
        ) -> str:
            return runbook_text(service, ctx, runbook, host, unit)

        return with_unit

    async def on_host(ctx: Context, host: HostArgument = "") -> str:
        return runbook_text(service, ctx, runbook, host)

    return on_host


def register_prompts(mcp: MCPServer, service: AgentService) -> None:
    for runbook in RUNBOOKS:
        mcp.prompt(name=runbook.name, title=runbook.title,
                   description=runbook.description)(_prompt(service, runbook))
