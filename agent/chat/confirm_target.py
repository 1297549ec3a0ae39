"""What a destructive tool call's confirmation box names: the host (or, for a fan-out,
every host it would run on) and the exact command line."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from agent.core.fanout import FanoutPlan
from agent.mcp.confirm import selector_list
from whitelist import Command, render

# Tools that run a catalog command named by their `command` argument: a destructive one
# waits for the person's click.
CONFIRMED_TOOLS = ("execute_command", "run_on_hosts")
# What a run_on_hosts call would run on, as the person asking sees it (their policy).
FanoutPlanner = Callable[[str, Mapping[str, object], list[str]], FanoutPlan]


def confirmation_target(tool: str, command: Command, arguments: Mapping[str, Any], host: str,
                        planner: FanoutPlanner | None) -> tuple[str, str, bool]:
    """(the hosts to name, the command line, whether it would run anywhere at all); a fan-out
    that would run nowhere needs no click. Raises WhitelistError / ConfigError."""
    parameters = arguments.get("parameters") or {}
    rendered = render(command, parameters)
    if tool == "run_on_hosts" and planner is not None:
        plan = planner(command.name, parameters, selector_list(arguments.get("hosts") or []))
        return ", ".join(plan.runnable), rendered, bool(plan.runnable)
    return host, rendered, True
