"""The HTTP server's sockets: every connection it accepts has Nagle's algorithm off.

With Nagle on, the body uvicorn writes after a response's head waits for the client to
acknowledge the head, and a client in request/response rhythm delays that by 40 ms:
about 45 ms on every response after a connection's first (issue 19). That stall is a
matter of timing; what causes it is not, so this checks the socket option itself, on
the connections of a real HTTPServer.
"""

from __future__ import annotations

import asyncio
import socket

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from agent.web.server import HTTPServer


async def hello(request: Request) -> PlainTextResponse:
    return PlainTextResponse("hello")


async def get_twice(port: int) -> asyncio.StreamWriter:
    """Two GETs on one keep-alive connection; returns it, still open."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    for _ in range(2):
        writer.write(f"GET / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode())
        assert (await reader.readuntil(b"\r\n\r\n")).startswith(b"HTTP/1.1 200 ")
        assert await reader.readexactly(len(b"hello")) == b"hello"
    return writer


async def test_every_accepted_connection_has_tcp_nodelay() -> None:
    http = HTTPServer(Starlette(routes=[Route("/", hello)]), port=0)
    port = await http.start()
    clients = []
    try:
        clients = list(await asyncio.gather(get_twice(port), get_twice(port)))
        connections = http.server.server_state.connections
        assert len(connections) == 2
        for protocol in connections:
            sock = protocol.transport.get_extra_info("socket")
            assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY), (
                "an accepted HTTP connection has Nagle's algorithm on")
    finally:
        for writer in clients:
            writer.close()
        http.request_exit()
        await http.wait()
