"""Several callers on one loopback server: each is a source address in 127.0.0.0/8.

All of 127.0.0.0/8 is loopback on Linux, so a test client can bind 127.0.0.2, 127.0.0.3...
and the agent sees distinct peers, as it sees distinct tailnet nodes behind tailscaled.
`by_address` is the identity seam (an IdentityResolver) that names them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import httpx
import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from starlette.types import Scope

from agent.access.identity import Identity
from agent.web.middleware.identity import IdentityResolver

ALICE = Identity(login="alice@example.com", node="alice-laptop.tailnet.test")
MALLORY = Identity(login=None, node="mallory.tailnet.test", tags=("tag:mallory",))
MALLORY_USER = Identity(login="mallory@example.com", node="mallory-pc.tailnet.test")

MCP_HEADERS = {"Accept": "application/json, text/event-stream",
               "Content-Type": "application/json"}
LEGACY_VERSION = "2025-06-18"


def by_address(identities: Mapping[str, Identity]) -> IdentityResolver:
    """Name callers by their source address; anyone else gets no identity (403)."""

    async def resolve(scope: Scope) -> Identity | None:
        client = scope.get("client")
        return identities.get(client[0]) if client else None

    return resolve


def http_from(address: str, **kwargs: Any) -> httpx.AsyncClient:
    """An HTTP client whose connections come from `address`."""
    return httpx.AsyncClient(transport=httpx.AsyncHTTPTransport(local_address=address),
                             **kwargs)


def mcp_from(url: str, address: str, **kwargs: Any) -> Client:
    """The official MCP client, connecting from `address`."""
    http = httpx2.AsyncClient(transport=httpx2.AsyncHTTPTransport(local_address=address),
                              timeout=httpx2.Timeout(30.0))
    return Client(streamable_http_client(url, http_client=http), **kwargs)


def initialize_body(request_id: int = 1) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": request_id, "method": "initialize",
            "params": {"protocolVersion": LEGACY_VERSION, "capabilities": {},
                       "clientInfo": {"name": "test", "version": "1"}}}


async def open_session(http: httpx.AsyncClient, url: str) -> str:
    """A legacy (2025) MCP session opened by hand: its id."""
    response = await http.post(url, json=initialize_body(), headers=MCP_HEADERS)
    assert response.status_code == 200, response.text
    session = response.headers["mcp-session-id"]
    await http.post(url, json={"jsonrpc": "2.0", "method": "notifications/initialized"},
                    headers=session_headers(session))
    return session


def session_headers(session: str) -> dict[str, str]:
    return {**MCP_HEADERS, "mcp-session-id": session, "mcp-protocol-version": LEGACY_VERSION}
