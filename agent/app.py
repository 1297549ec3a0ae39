"""Composing the agent: settings -> service -> MCP server -> HTTP app (with the chat page).

Every way of running the agent builds it here, so the chain is written once:
`serve` (tailnet and --local), `demo`, `mcp --stdio` (service and MCP server only)
and the tests.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from mcp.server.mcpserver import MCPServer
from starlette.types import ASGIApp

from agent.chat import ChatOptions, chat_routes
from agent.core.metrics import Recorder
from agent.core.readiness import ReadinessCheck
from agent.core.service import AgentService, StatusProvider
from agent.hosts.registry import HostRegistry
from agent.mcp import build_mcp_server
from agent.settings import Settings
from agent.ssh import Connector, SSHPool
from agent.web.asgi import build_http_app, build_ops_app
from agent.web.mcp_sessions import SessionGuard
from agent.web.middleware.host_origin import HostOriginMiddleware
from agent.web.middleware.identity import IdentityResolver
from agent.web.prometheus import AgentMetrics
from whitelist import Catalog, load_catalog


@dataclass(frozen=True)
class Agent:
    service: AgentService
    mcp: MCPServer
    app: HostOriginMiddleware  # the ASGI app; `.allow(names)` adds Host names learned later
    ops_app: ASGIApp  # /healthz, /readyz, /metrics for the local socket (TAILNET_AGENT_SOCKET)
    metrics: AgentMetrics
    readiness: ReadinessCheck
    sessions: SessionGuard  # MCP sessions: owned by the identity that opened them, capped


def build_service(
    settings: Settings,
    *,
    mode: str,
    connector: Connector | None = None,
    catalog: Catalog | None = None,
    tailnet_status: StatusProvider | None = None,
    recorder: Recorder | None = None,
) -> AgentService:
    """The service with its hosts, SSH pool, policy and audit log (catalog files from
    settings). The pool reads the live host registry, so tailnet hosts (agent/tailnet/fleet.py)
    reach it as they come; connections of hosts that leave are closed."""
    if catalog is None:
        catalog = load_catalog(settings.catalog_files)
    hosts = HostRegistry(settings.hosts, settings.default_host,
                         tailnet=bool(settings.tailnet_selectors))
    pool = SSHPool(
        hosts,
        connector=connector,
        max_sessions=settings.max_sessions_per_host,
        connect_timeout=settings.connect_timeout,
        idle_timeout=settings.ssh_idle_timeout,
        max_connections=settings.ssh_max_connections,
    )
    hosts.subscribe(pool.prune)
    return AgentService(settings, catalog, pool, mode=mode, tailnet_status=tailnet_status,
                        recorder=recorder, hosts=hosts)


def build_agent(
    settings: Settings,
    *,
    mode: str,
    resolver: IdentityResolver,
    allowed_names: Iterable[str],
    connector: Connector | None = None,
    catalog: Catalog | None = None,
    tailnet_status: StatusProvider | None = None,
    chat_options: ChatOptions | None = None,
) -> Agent:
    """Service, MCP server and the HTTP app serving both (MCP at /mcp, the chat at /, the
    operator's routes), and the app for the local socket."""
    metrics = AgentMetrics()
    service = build_service(settings, mode=mode, connector=connector, catalog=catalog,
                            tailnet_status=tailnet_status, recorder=metrics)
    mcp = build_mcp_server(service)
    readiness = ReadinessCheck(service)
    app, sessions = build_http_app(
        service,
        mcp,
        resolver=resolver,
        allowed_names=allowed_names,
        readiness=readiness,
        metrics=metrics,
        extra_routes=chat_routes(service, mcp, chat_options),
    )
    ops_app = build_ops_app(service, readiness, metrics)
    return Agent(service=service, mcp=mcp, app=app, ops_app=ops_app, metrics=metrics,
                 readiness=readiness, sessions=sessions)
