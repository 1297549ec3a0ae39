"""The HTTP surface under attack: forged identity headers, DNS rebinding, cross-site
requests and oversized bodies, against the app served by uvicorn on loopback."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from agent.access.identity import local_user_identity
from agent.audit.reader import read_calls
from agent.hosts.inventory import HostConfig
from tests.support.agents import running_agent, settings_for

MCP_HEADERS = {"Accept": "application/json, text/event-stream",
               "Content-Type": "application/json"}
FORGED = {"Tailscale-User-Login": "admin@evil.example", "Tailscale-User-Name": "Admin",
          "Tailscale-User-Profile-Pic": "http://evil.example/x.png"}


@dataclass
class Served:
    base: str
    audit: Path


@pytest.fixture(scope="module")
def audit_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    yield tmp_path_factory.mktemp("web-audit")


@pytest.fixture(scope="module")
async def served(ssh_host: HostConfig, audit_dir: Path) -> AsyncIterator[Served]:
    settings = settings_for(ssh_host, audit_log=audit_dir / "audit.jsonl")
    async with running_agent(settings) as running:
        yield Served(running.base, audit_dir / "audit.jsonl")


def rpc(method: str, params: dict[str, object] | None = None, id: int = 1) -> dict[str, object]:
    return {"jsonrpc": "2.0", "id": id, "method": method, "params": params or {}}


async def test_forged_tailscale_user_headers_are_ignored(served: Served) -> None:
    async with httpx2.AsyncClient(headers=FORGED) as http, Client(
        f"{served.base}/mcp"
    ) as plain:
        # The official client on an HTTP client that adds the forged headers to every request.
        async with Client(streamable_http_client(f"{served.base}/mcp", http_client=http)) as mcp:
            pong = await mcp.call_tool("ping", {})
            disk = await mcp.call_tool("check_disk", {})
        honest = await plain.call_tool("ping", {})
    assert not disk.is_error
    who = pong.structured_content["identity"]
    assert who == honest.structured_content["identity"]
    assert "admin" not in who.lower() and "evil" not in who
    recorded = read_calls(served.audit)[-1].merged()
    assert recorded["identity"] == local_user_identity().principal
    assert "evil" not in json.dumps(recorded)


@pytest.mark.parametrize("host", ["evil.example", "evil.example:8765", "127.0.0.1.nip.io",
                                  "agent.tailnet.test", "", "127.0.0.1@evil.example"])
async def test_dns_rebinding_host_values_are_refused_on_every_route(
    served: Served, host: str
) -> None:
    async with httpx.AsyncClient(base_url=served.base) as http:
        for method, path in (("GET", "/healthz"), ("GET", "/"), ("POST", "/mcp"),
                             ("POST", "/chat/send"), ("GET", "/static/chat.css")):
            response = await http.request(method, path, headers={**MCP_HEADERS, "Host": host},
                                          content=json.dumps(rpc("ping")))
            assert response.status_code == 403, (method, path, response.text)
            assert "is not a name of this agent" in response.text


@pytest.mark.parametrize("origin", ["http://evil.example", "https://127.0.0.1.evil.example",
                                    "null", "file://", "http://localhost.evil.example:80"])
async def test_cross_site_origins_are_refused(served: Served, origin: str) -> None:
    async with httpx.AsyncClient(base_url=served.base) as http:
        response = await http.post("/mcp", headers={**MCP_HEADERS, "Origin": origin},
                                   content=json.dumps(rpc("initialize")))
        assert response.status_code == 403 and "Origin" in response.text
        response = await http.post("/chat/new", headers={"Origin": origin})
        assert response.status_code == 403


async def test_cross_site_chat_posts_are_refused(served: Served) -> None:
    async with httpx.AsyncClient(base_url=served.base) as http:
        for site in ("cross-site", "same-site", "none"):
            response = await http.post("/chat/run", data={"command": "hostname"},
                                       headers={"Sec-Fetch-Site": site})
            assert response.status_code == 403, site
            assert "did not come from the chat page" in response.text
        # Without Sec-Fetch-Site (an old browser or a script) the page's token is required.
        response = await http.post("/chat/run", data={"command": "hostname"})
        assert response.status_code == 403
        response = await http.post("/chat/run", data={"command": "hostname",
                                                      "chat_token": "guessed"})
        assert response.status_code == 403


async def test_oversized_bodies_get_413_with_a_message(served: Served) -> None:
    big = json.dumps(rpc("ping", {"pad": "x" * (1024 * 1024 + 10)}))
    async with httpx.AsyncClient(base_url=served.base) as http:
        response = await http.post("/mcp", headers=MCP_HEADERS, content=big)
        assert response.status_code == 413
        assert "at most 1048576 bytes" in response.text

        async def chunks() -> AsyncIterator[bytes]:
            for _ in range(40):
                yield b"x" * 32768  # 1.25 MiB with no Content-Length

        response = await http.post("/mcp", headers=MCP_HEADERS, content=chunks())
        assert response.status_code == 413
        response = await http.post("/chat/send", data={"message": "x" * 70_000},
                                   headers={"Sec-Fetch-Site": "same-origin"})
        assert response.status_code == 413 and "at most 65536 bytes" in response.text
        # Under the limit, the request reaches the endpoint as before.
        response = await http.post("/chat/send", data={"message": "x" * 9000},
                                   headers={"Sec-Fetch-Site": "same-origin"})
        assert response.status_code == 200
        async with Client(f"{served.base}/mcp") as mcp:
            assert not (await mcp.call_tool("ping", {})).is_error
