"""MCP resources, each read as the caller sees it: the catalog, the hosts, and the caller's
own recent audit entries.

The SDK gives static resources no request context, so the URIs are registered for
listing and `AgentMCPServer.read_resource` (context.py) answers them with the caller's
identity: two callers reading the same URI get their own view.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ResourceError
from mcp.server.mcpserver.resources import FunctionResource

from agent.core.audit_records import recent_calls
from agent.core.identity import Identity
from agent.core.service import AgentService

from .models import CommandList, HostInfo, HostList, command_info

CATALOG_URI = "tailnet-agent://catalog"
HOSTS_URI = "tailnet-agent://hosts"
AUDIT_URI = "tailnet-agent://audit/recent"
RECENT_LIMIT = 50

CallerResource = Callable[[AgentService, Identity], Any]


def _catalog(service: AgentService, identity: Identity) -> Any:
    commands = service.visible_commands(identity)
    return CommandList(commands=[command_info(c, service.runs_as(c)) for c in commands],
                       categories=sorted({c.category for c in commands})).model_dump()


def _hosts(service: AgentService, identity: Identity) -> Any:
    return HostList(hosts=[HostInfo.of(v) for v in service.host_views(identity)]).model_dump()


def _audit(service: AgentService, identity: Identity) -> Any:
    calls = recent_calls(service.audit.path, identity, limit=RECENT_LIMIT)
    return {"identity": identity.principal, "calls": calls}


RESOURCES: dict[str, tuple[str, str, CallerResource]] = {
    CATALOG_URI: ("catalog", "The whitelisted commands you may run, with their parameters "
                  "(what list_commands returns).", _catalog),
    HOSTS_URI: ("hosts", "The hosts you may run commands on (what list_hosts returns).",
                _hosts),
    AUDIT_URI: ("recent-audit", f"Your own last {RECENT_LIMIT} calls from the audit log, "
                "newest first: command, host, outcome, exit status, who approved.", _audit),
}


def read_for_caller(service: AgentService, uri: str, identity: Identity) -> str | None:
    """The resource's JSON as `identity` sees it; None if `uri` is not one of ours."""
    entry = RESOURCES.get(uri)
    if entry is None:
        return None
    return json.dumps(entry[2](service, identity), indent=1, ensure_ascii=False, default=str)


def register_resources(mcp: MCPServer) -> None:
    for uri, (name, description, _) in RESOURCES.items():

        def unread() -> str:
            # Never called: AgentMCPServer.read_resource answers with the caller's view.
            raise ResourceError("this resource is read with the caller's identity")

        mcp.add_resource(FunctionResource(uri=uri, name=name, description=description,
                                          mime_type="application/json", fn=unread))
