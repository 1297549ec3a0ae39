"""The seed's topology on the test tailnet, for the "through the tailnet" figure.

headscale with its embedded DERP on loopback; a "server" node in front of the
real sshd; the agent as a subprocess joining with its own tailscaled (its SSH goes
through its SOCKS5 proxy); an MCP client dialing the agent through a third node's
SOCKS5 proxy. Same pieces as tests/tailnet/test_agent_e2e.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from tailscale_userspace import TailscaleNode
from tests.bench.bench_servers import ServerProcess, agent_env, start_agent
from tests.support.sshd import Sshd
from tests.support.tailnet import Headscale, TestTailnet, ensure_binaries


@dataclass
class Topology:
    agent: ServerProcess
    url: str
    startup: float
    client_node: TailscaleNode
    server_ip: str  # "ip:port" form for whois
    known_hosts: Path  # the sshd key pinned under the server's tailnet address

    def http(self) -> httpx2.AsyncClient:
        """An HTTP client dialing through the client node's SOCKS5 proxy."""
        host, port = self.client_node.socks5
        return httpx2.AsyncClient(proxy=f"socks5://{host}:{port}", timeout=httpx2.Timeout(30.0))

    @contextlib.asynccontextmanager
    async def client(self, url: str | None = None, **options: Any) -> AsyncIterator[Client]:
        """An MCP client dialing `url` (default: the agent) through the client node;
        `options` go to mcp.Client (an elicitation callback, say)."""
        deadline = time.monotonic() + 60
        while True:  # the client node may not have the agent in its netmap yet
            stack = contextlib.AsyncExitStack()
            http = self.http()
            try:
                mcp = await stack.enter_async_context(
                    Client(streamable_http_client(url or self.url, http_client=http), **options))
                await mcp.list_tools()  # proves the path end to end
            except Exception:
                await stack.aclose()
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.5)
                continue
            break
        async with stack:
            yield mcp


@contextlib.asynccontextmanager
async def tailnet_topology(sshd: Sshd, work: Path, extra_env: dict[str, str] | None = None
                           ) -> AsyncIterator[Topology]:
    binaries = ensure_binaries()
    net_dir = work / "tailnet"
    net_dir.mkdir(mode=0o700)
    headscale = Headscale(binaries.headscale, net_dir)
    headscale.start()
    tailnet = TestTailnet(binaries, headscale, net_dir)
    agent: ServerProcess | None = None
    try:
        server = await tailnet.node("bench-server", user="ops")
        client_node = await tailnet.node("bench-client", user="bob")
        server_ip = server.info.ips[0] if server.info else ""
        known_hosts = work / "tailnet_known_hosts"
        # known_hosts pins the same key under the server's tailnet address.
        pinned = sshd.known_hosts.read_text().split(None, 1)[1]
        known_hosts.write_text(f"[{server_ip}]:{sshd.port} {pinned}")
        env = {**agent_env(sshd, work, address=server_ip, known_hosts=known_hosts),
               **tailnet.env(user="agent", hostname="bench-agent"), **(extra_env or {})}
        agent, url, startup = start_agent(env)
        yield Topology(agent, url, startup, client_node, f"{server_ip}:{sshd.port}", known_hosts)
    finally:
        if agent is not None:
            agent.stop()
        await tailnet.aclose()
        headscale.stop()
