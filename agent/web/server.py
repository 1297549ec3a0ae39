"""Running the HTTP app: bind, announce, serve, and shut down in a fixed order.

Before it binds, the server raises its soft descriptor limit to the hard one, puts
ConnectionGuard (connections.py: read timeouts, caps per peer and in all, below the
descriptor limit) in front of uvicorn's h11 protocol, and rate-limits repeated log
records (log_limit.py).

Shutdown order (each step only after the one before it finished):
1. stop accepting HTTP and let in-flight requests finish (uvicorn's graceful exit);
2. close the SSH connections (in-flight commands have ended with their requests), let the
   audit shipper send what it has not yet (briefly), then seal the audit log (with a
   signing key);
3. stop tailscaled, if we own one: SIGTERM so an ephemeral node logs out, then wait,
   then SIGKILL after a timeout (done by the caller's `finally`, see commands/serve.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import logging
import signal
import socket
from collections.abc import Iterator, Sequence

import uvicorn
from starlette.types import ASGIApp

from agent.core.service import AgentService
from agent.errors import ConfigError, PortInUse
from agent.logs import say
from agent.settings import Settings

from . import log_limit
from .connections import (
    ConnectionGuard,
    ConnectionLimits,
    PeerKey,
    fitting,
    raise_descriptor_limit,
)

log = logging.getLogger(__name__)


def client_config(url: str) -> str:
    """A ready-to-paste MCP client configuration for Streamable HTTP."""
    return json.dumps({"mcpServers": {"tailnet-agent": {"type": "http", "url": url}}}, indent=2)


class _Uvicorn(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        # uvicorn would re-raise SIGTERM after its own shutdown and kill the process
        # before our later shutdown steps ran; `serve_app` handles signals instead.
        yield


def connection_limits(settings: Settings) -> ConnectionLimits:
    return ConnectionLimits(total=settings.http_max_connections,
                            per_peer=settings.http_connections_per_peer,
                            header_timeout=settings.http_header_timeout,
                            body_timeout=settings.http_body_timeout)


class HTTPServer:
    """uvicorn on one loopback port, started in the background of the current loop."""

    def __init__(self, app: ASGIApp, *, port: int, log_level: str = "warning",
                 limits: ConnectionLimits | None = None, peer_key: PeerKey | None = None
                 ) -> None:
        descriptors = raise_descriptor_limit()
        self.guard = ConnectionGuard(fitting(limits or ConnectionLimits(), descriptors),
                                     peer_key)
        config = uvicorn.Config(
            app,
            host="127.0.0.1",  # never a non-loopback interface; tailnet peers arrive via tailscaled
            port=port,
            log_level=log_level,
            lifespan="on",
            server_header=False,
            timeout_graceful_shutdown=10,
            log_config=None,  # uvicorn's records go through our handler (text or JSON)
            http=self.guard.protocol(),
            backlog=self.guard.limits.backlog,
        )
        self.server = _Uvicorn(config)
        self._task: asyncio.Task[None] | None = None

    def _bind(self) -> socket.socket:
        """Our own loopback socket, so a port in use is a clear error and not uvicorn's exit."""
        port = self.server.config.port
        # IPPROTO_TCP, not the default 0: asyncio turns Nagle off (TCP_NODELAY) only on
        # sockets whose proto says TCP, and accepted sockets inherit the listener's. With
        # Nagle on, the body uvicorn writes after the head waited for the client's delayed
        # ACK: about 40 ms on every response but a connection's first.
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError as exc:
            sock.close()
            if exc.errno == errno.EADDRINUSE:
                raise PortInUse(
                    f"port {port} on 127.0.0.1 is already in use (another tailnet-agent?); "
                    "stop that program, or choose another port with --port (--port 0 picks "
                    "a free one)"
                ) from None
            raise ConfigError(f"cannot listen on 127.0.0.1:{port}: {exc.strerror}; choose "
                              "another port with --port") from None
        sock.set_inheritable(False)
        return sock

    async def start(self) -> int:
        """Start serving; return the bound port once the server accepts connections."""
        log_limit.install()
        log_limit.install(logging.getLogger("uvicorn"))
        self._task = asyncio.create_task(self.server.serve(sockets=[self._bind()]))
        while not self.server.started:
            if self._task.done():
                self._task.result()  # re-raise the bind error
                raise RuntimeError("the HTTP server stopped before it started")
            await asyncio.sleep(0.02)
        name = self.server.servers[0].sockets[0].getsockname()
        return int(name[1]) if isinstance(name, tuple) else 0  # 0: a unix socket

    async def wait(self) -> None:
        assert self._task is not None
        await self._task

    def request_exit(self) -> None:
        """Stop accepting and finish in-flight requests; a second call stops at once."""
        if self.server.should_exit:
            self.server.force_exit = True
        self.server.should_exit = True
        self.guard.shutdown()


def announce(lines: Sequence[str]) -> None:
    for line in lines:
        say(line)


async def serve_app(
    service: AgentService,
    app: ASGIApp,
    *,
    port: int,
    banner: Sequence[str],
    url_host: str = "127.0.0.1",
    peer_key: PeerKey | None = None,
) -> None:
    """Serve until SIGINT/SIGTERM, then shut down in the order written above."""
    http = HTTPServer(app, port=port, limits=connection_limits(service.settings),
                      peer_key=peer_key)
    bound = await http.start()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, http.request_exit)
    url = f"http://{url_host}:{bound}/mcp"
    announce(
        [
            *banner,
            f"MCP endpoint: {url}",
            f"Chat page:    http://{url_host}:{bound}/",
            "Client configuration (Claude Code: claude mcp add --transport http tailnet-agent "
            f"{url}):",
            client_config(url),
            "Ready. Press Ctrl-C to stop.",
        ]
    )
    try:
        await http.wait()  # returns after a signal: stopped accepting, requests finished
    finally:
        await service.close()
