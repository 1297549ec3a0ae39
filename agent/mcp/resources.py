"""MCP resources, each read as the caller sees it: the catalog, the hosts, and the caller's
own recent audit entries.

The SDK gives static resources no request context, so the URIs are registered for
listing and `AgentMCPServer.read_resource` (context.py) answers them with the caller's
identity: two callers reading the same URI get their own view.

The hosts are a page at a time, like list_hosts: `tailnet-agent://hosts` is the first
page, and `tailnet-agent://hosts?tag=web&online=true&name=web-*&cursor=web-050&limit=100`
filters and pages (registered as a resource template too, so clients can discover it).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ResourceError
from mcp.server.mcpserver.resources import FunctionResource

from agent.access.identity import Identity
from agent.audit.reader import recent_calls
from agent.core.service import AgentService
from agent.errors import ConfigError
from agent.hosts.query import DEFAULT_LIMIT, HostQuery

from .models import CommandList, HostList, command_info

CATALOG_URI = "tailnet-agent://catalog"
HOSTS_URI = "tailnet-agent://hosts"
HOSTS_QUERY = ("tag", "online", "name", "cursor", "limit")
HOSTS_TEMPLATE = HOSTS_URI + "{?" + ",".join(HOSTS_QUERY) + "}"
AUDIT_URI = "tailnet-agent://audit/recent"
RECENT_LIMIT = 50

# (service, caller, the URI's query parameters) -> the resource's JSON value
CallerResource = Callable[[AgentService, Identity, Mapping[str, str]], Any]


def _catalog(service: AgentService, identity: Identity, _query: Mapping[str, str]) -> Any:
    commands = service.visible_commands(identity)
    return CommandList(commands=[command_info(c, service.runs_as(c)) for c in commands],
                       categories=sorted({c.category for c in commands})).model_dump()


def _hosts(service: AgentService, identity: Identity, params: Mapping[str, str]) -> Any:
    query = hosts_query(params)
    kept = {k: v for k, v in params.items() if k != "cursor"}

    def next_page(cursor: str) -> str:
        return f"read {HOSTS_URI}?{urlencode({**kept, 'cursor': cursor})}"

    return HostList.of(service.host_page(identity, query), query, next_page).to_dict()


def hosts_query(params: Mapping[str, str]) -> HostQuery:
    """The page a hosts URI asks for; a parameter that is not one raises ResourceError."""
    unknown = sorted(set(params) - set(HOSTS_QUERY))
    if unknown:
        raise ResourceError(f"{HOSTS_URI} takes {', '.join(HOSTS_QUERY)}; not "
                            f"{', '.join(unknown)}")
    online = params.get("online")
    if online not in (None, "true", "false"):
        raise ResourceError(f"online must be true or false, not {online[:20]!r}")
    limit = params.get("limit", "")
    if limit and not limit.isdigit():
        raise ResourceError(f"limit must be a number of hosts, not {limit[:20]!r}")
    try:
        return HostQuery(tag=params.get("tag"), online=None if online is None else
                         online == "true", name=params.get("name"),
                         cursor=params.get("cursor"),
                         limit=int(limit) if limit else DEFAULT_LIMIT)
    except ConfigError as exc:
        raise ResourceError(str(exc)) from None


def _audit(service: AgentService, identity: Identity, _query: Mapping[str, str]) -> Any:
    calls = recent_calls(service.audit.path, identity, limit=RECENT_LIMIT)
    return {"identity": identity.principal, "calls": calls}


RESOURCES: dict[str, tuple[str, str, CallerResource]] = {
    CATALOG_URI: ("catalog", "The whitelisted commands you may run, with their parameters "
                  "(what list_commands returns).", _catalog),
    HOSTS_URI: ("hosts", "The hosts you may run commands on, a page at a time (what "
                "list_hosts returns).", _hosts),
    AUDIT_URI: ("recent-audit", f"Your own last {RECENT_LIMIT} calls from the audit log, "
                "newest first: command, host, outcome, exit status, who approved.", _audit),
}


def read_for_caller(service: AgentService, uri: str, identity: Identity) -> str | None:
    """The resource's JSON as `identity` sees it; None if `uri` is not one of ours (only
    the hosts take query parameters)."""
    base, _, query = uri.partition("?")
    entry = RESOURCES.get(base)
    if entry is None or (query and base != HOSTS_URI):
        return None
    params: dict[str, str] = {}
    for key, values in parse_qs(urlsplit(uri).query, keep_blank_values=True).items():
        if len(values) > 1:
            raise ResourceError(f"{key} is given {len(values)} times; give it once")
        params[key] = values[0]
    return json.dumps(entry[2](service, identity, params), indent=1, ensure_ascii=False,
                      default=str)


def _unread(**_params: str | None) -> str:
    # Never called: AgentMCPServer.read_resource answers with the caller's view.
    raise ResourceError("this resource is read with the caller's identity")


def register_resources(mcp: MCPServer) -> None:
    for uri, (name, description, _) in RESOURCES.items():
        mcp.add_resource(FunctionResource(uri=uri, name=name, description=description,
                                          mime_type="application/json", fn=_unread))

    def hosts_page(tag: str | None = None, online: str | None = None, name: str | None = None,
                   cursor: str | None = None, limit: str | None = None) -> str:
        return _unread()

    mcp.resource(HOSTS_TEMPLATE, name="hosts-page", mime_type="application/json",
                 description="The hosts you may use, filtered (tag, online=true|false, name: "
                 "a glob or part of the name) and paged (cursor: the previous page's "
                 "next_cursor; limit: hosts a page, at most 200)")(hosts_page)
