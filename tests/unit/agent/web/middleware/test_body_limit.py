"""BodyLimitMiddleware on its own: 413 over the limit, declared or chunked; the app sees
the whole body or nothing."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from starlette.types import Message, Receive, Scope, Send

from agent.web.middleware.body_limit import BodyLimitMiddleware


class Echo:
    """Counts what reaches it and answers with the body's length."""

    def __init__(self) -> None:
        self.calls = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.calls += 1
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body", False):
                break
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": str(len(body)).encode()})


@pytest.fixture
def echo() -> Echo:
    return Echo()


def client(app: BodyLimitMiddleware) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://x")


async def chunks(total: int, size: int = 1000) -> AsyncIterator[bytes]:
    for start in range(0, total, size):
        yield b"x" * min(size, total - start)


@pytest.mark.parametrize(("path", "size", "expected"), [
    ("/mcp", 1000, 200), ("/mcp", 1001, 413), ("/mcp/x", 1001, 413),
    ("/chat", 100, 200), ("/chat", 101, 413), ("/mcpx", 101, 413),
])
async def test_declared_lengths_per_path(echo: Echo, path: str, size: int,
                                         expected: int) -> None:
    guard = BodyLimitMiddleware(echo, [("/mcp", 1000)], default=100)
    async with client(guard) as http:
        response = await http.post(path, content=b"x" * size)
    assert response.status_code == expected
    if expected == 413:
        assert "accepts at most" in response.text and "send less" in response.text
        assert echo.calls == 0
    else:
        assert response.text == str(size)


async def test_a_chunked_body_without_length_is_counted(echo: Echo) -> None:
    guard = BodyLimitMiddleware(echo, [], default=5000)
    async with client(guard) as http:
        small = await http.post("/", content=chunks(5000))
        big = await http.post("/", content=chunks(5001))
    assert (small.status_code, small.text) == (200, "5000")
    assert big.status_code == 413
    assert echo.calls == 1  # the oversized body never reached the app


async def test_a_malformed_length_is_refused(echo: Echo) -> None:
    guard = BodyLimitMiddleware(echo, [], default=100)
    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        sent.append(message)

    scope = {"type": "http", "path": "/", "headers": [(b"content-length", b"12abc")]}
    await guard(scope, receive, send)
    assert sent[0]["status"] == 413 and echo.calls == 0


async def test_other_scopes_pass_through(echo: Echo) -> None:
    seen: list[str] = []

    async def lifespan(scope: Scope, receive: Receive, send: Send) -> None:
        seen.append(scope["type"])

    guard = BodyLimitMiddleware(lifespan, [], default=1)

    async def nothing() -> Message:
        return {}

    async def drop(message: Message) -> None:
        pass

    await guard({"type": "lifespan"}, nothing, drop)
    assert seen == ["lifespan"]
