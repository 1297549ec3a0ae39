"""HostOriginMiddleware on its own: only this node's names as Host, no cross-site Origin."""

from __future__ import annotations

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from agent.web.middleware.host_origin import LOOPBACK_NAMES, HostOriginMiddleware


async def hello(request: Request) -> PlainTextResponse:
    return PlainTextResponse("hello")


def app(names: tuple[str, ...] = ("agent.tailnet.test", "100.64.0.3")) -> HostOriginMiddleware:
    return HostOriginMiddleware(Starlette(routes=[Route("/", hello, methods=["GET", "POST"])]),
                                names)


async def status(guard: HostOriginMiddleware, host: str, origin: str | None = None) -> int:
    headers = {"Host": host, **({"Origin": origin} if origin else {})}
    async with httpx.AsyncClient(transport=httpx.ASGITransport(guard),
                                 base_url="http://x") as client:
        response = await client.post("/", headers=headers)
    if response.status_code == 403:
        assert "Use the URL the agent printed at start" in response.text
    return response.status_code


@pytest.mark.parametrize("host", ["agent.tailnet.test", "agent.tailnet.test:8765",
                                  "AGENT.tailnet.test.", "100.64.0.3:8765"])
async def test_this_nodes_names_pass(host: str) -> None:
    assert await status(app(), host) == 200


@pytest.mark.parametrize("host", ["evil.example", "evil.example:8765", "agent.tailnet.test.evil",
                                  "127.0.0.1", "", "100.64.0.4"])
async def test_other_hosts_are_refused(host: str) -> None:
    assert await status(app(), host) == 403


@pytest.mark.parametrize(("origin", "expected"), [
    ("http://agent.tailnet.test:8765", 200),
    ("http://AGENT.tailnet.test.:8765", 200),
    ("http://agent.tailnet.test", 403),  # another port is another origin
    ("http://agent.tailnet.test:9999", 403),
    ("https://agent.tailnet.test:8765", 403),  # so is another scheme
    ("http://100.64.0.3:8765", 403),  # and another of our names
    ("http://evil.example", 403),
    ("http://agent.tailnet.test:8765@evil.example", 403),
    ("null", 403),
    ("file://agent.tailnet.test", 403),
])
async def test_origin_must_be_this_very_origin(origin: str, expected: int) -> None:
    assert await status(app(), "agent.tailnet.test:8765", origin) == expected


@pytest.mark.parametrize("host", ["localhost:80@evil.com", "[::1]evil", "agent.tailnet.test:80@x",
                                  "agent.tailnet.test:99999", "agent.tailnet.test:", "[::1",
                                  "agent.tailnet.test evil", "agent.tailnet.test:8765:1"])
async def test_hosts_are_parsed_strictly(host: str) -> None:
    assert await status(app(("agent.tailnet.test", "localhost", "[::1]")), host) == 403


async def test_names_learned_later_are_allowed() -> None:
    guard = app(LOOPBACK_NAMES)
    assert await status(guard, "agent.tailnet.test") == 403
    guard.allow(["agent.tailnet.test"])
    assert await status(guard, "agent.tailnet.test") == 200
    assert await status(guard, "localhost:8765") == 200
