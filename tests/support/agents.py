"""An agent served over real HTTP on loopback, built exactly as `serve --local` builds it
(agent.app.build_agent), for tests that talk to it as MCP clients or browsers do."""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from agent.access.identity import Identity, local_user_identity
from agent.app import Agent, build_agent
from agent.chat import ChatOptions
from agent.core.service import AgentService, StatusProvider
from agent.hosts.inventory import HostConfig
from agent.settings import Settings
from agent.web.connections import ConnectionLimits, PeerKey
from agent.web.middleware.host_origin import LOOPBACK_NAMES
from agent.web.middleware.identity import IdentityResolver, fixed_resolver
from agent.web.server import HTTPServer, connection_limits
from whitelist import Catalog


@dataclass
class RunningAgent:
    base: str
    agent: Agent

    @property
    def url(self) -> str:
        return f"{self.base}/mcp"

    @property
    def service(self) -> AgentService:
        return self.agent.service


def settings_for(host: HostConfig, **values: object) -> Settings:
    """Settings with one host (the default) and whatever else a test needs."""
    return dataclasses.replace(Settings(), hosts={host.name: host}, default_host=host.name,
                               **values)  # type: ignore[arg-type]


@contextlib.asynccontextmanager
async def running_agent(
    settings: Settings,
    *,
    identity: Identity | None = None,
    catalog: Catalog | None = None,
    catalogs: Sequence[Path] = (),
    mode: str = "local",
    chat_options: ChatOptions | None = None,
    tailnet_status: StatusProvider | None = None,
    resolver: IdentityResolver | None = None,
    limits: ConnectionLimits | None = None,
    peer_key: PeerKey | None = None,
) -> AsyncIterator[RunningAgent]:
    """Serve the agent on 127.0.0.1:<free port>; every caller is `identity` (default: the
    local user, as in `serve --local`), or whoever `resolver` says."""
    if catalogs:
        settings = dataclasses.replace(
            settings, catalog_files=(*settings.catalog_files, *catalogs))
    agent = build_agent(
        settings,
        mode=mode,
        resolver=resolver or fixed_resolver(identity or local_user_identity("local")),
        allowed_names=LOOPBACK_NAMES,
        catalog=catalog,
        chat_options=chat_options,
        tailnet_status=tailnet_status,
    )
    http = HTTPServer(agent.app, port=0, limits=limits or connection_limits(settings),
                      peer_key=peer_key)
    port = await http.start()
    try:
        yield RunningAgent(base=f"http://127.0.0.1:{port}", agent=agent)
    finally:
        http.request_exit()
        await http.wait()
        await agent.service.close()


@contextlib.asynccontextmanager
async def agent_with_catalog(host: HostConfig, work: Path, catalog: str
                             ) -> AsyncIterator[RunningAgent]:
    """`running_agent` for one host with an extra catalog (YAML text) and an audit log of its
    own in `work`."""
    path = work / "extra-catalog.yaml"
    path.write_text(catalog)
    settings = dataclasses.replace(settings_for(host), audit_log=work / "audit.jsonl")
    async with running_agent(settings, catalogs=(path,)) as running:
        yield running
