"""An agent served over real HTTP on loopback, backed by the real test sshd."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from agent.config import HostConfig, load_settings
from agent.hostcheck import LOOPBACK_NAMES
from agent.identity import fixed_resolver, local_user_identity
from agent.mcp_server import build_mcp_server
from agent.server import HTTPServer, build_service
from agent.service import AgentService
from agent.web import build_app


@dataclass
class RunningAgent:
    url: str
    base: str
    service: AgentService


async def start_agent(
    host: HostConfig, *, catalogs: tuple[Path, ...] = ()
) -> tuple[RunningAgent, HTTPServer]:
    settings = load_settings({}, env_file=None)
    settings = dataclasses.replace(settings, hosts={host.name: host}, default_host=host.name)
    service = build_service(settings, mode="local", extra_catalogs=[str(c) for c in catalogs])
    mcp = build_mcp_server(service)
    app = build_app(service, mcp, resolver=fixed_resolver(local_user_identity("local")),
                    allowed_names=LOOPBACK_NAMES)
    http = HTTPServer(app, port=0)
    port = await http.start()
    base = f"http://127.0.0.1:{port}"
    return RunningAgent(url=f"{base}/mcp", base=base, service=service), http


@pytest.fixture(scope="session")
async def agent(ssh_host: HostConfig) -> AsyncIterator[RunningAgent]:
    running, http = await start_agent(ssh_host)
    yield running
    http.request_exit()
    await http.wait()
    await running.service.pool.close()
