"""Host and Origin checks for every route: the defence against DNS rebinding.

A browser page on evil.example that resolves its own name to our address could
otherwise talk to the agent with the victim's tailnet identity. We accept only
Host values that name this node (its tailnet names and IPs, or loopback in local
mode), and refuse any Origin that is not one of those. The MCP SDK has its own
check, but it is off for non-loopback hosts unless configured; this middleware
covers every route, the chat page included.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from starlette.datastructures import Headers
from starlette.responses import PlainTextResponse
from starlette.types import ASGIApp, Receive, Scope, Send

log = logging.getLogger(__name__)

LOOPBACK_NAMES = ("127.0.0.1", "localhost", "[::1]")


def _split_host(value: str) -> str:
    """'name:port' -> 'name'; '[::1]:8080' -> '[::1]'."""
    value = value.strip().lower()
    if value.startswith("["):
        end = value.find("]")
        return value[: end + 1] if end != -1 else value
    return value.rsplit(":", 1)[0] if value.count(":") == 1 else value


class HostOriginMiddleware:
    def __init__(self, app: ASGIApp, allowed_names: Iterable[str]) -> None:
        self.app = app
        self.allowed = {name.lower().rstrip(".") for name in allowed_names}

    def allow(self, names: Iterable[str]) -> None:
        """Add names learned later (the tailnet IP and MagicDNS name after joining)."""
        self.allowed.update(name.lower().rstrip(".") for name in names)

    def _host_ok(self, host: str | None) -> bool:
        # A fully qualified name may end with a dot (agent.tailnet.test.): the same name.
        return bool(host) and _split_host(host or "").rstrip(".") in self.allowed

    def _origin_ok(self, origin: str | None) -> bool:
        if origin is None:
            return True  # non-browser clients send none
        scheme, sep, rest = origin.partition("://")
        return bool(sep) and scheme in ("http", "https") and _split_host(rest) in self.allowed

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        host, origin = headers.get("host"), headers.get("origin")
        if not self._host_ok(host):
            log.warning("refused a request with Host %r (not one of this node's names)", host)
            reason = f"Host {host!r} is not a name of this agent"
        elif not self._origin_ok(origin):
            log.warning("refused a request with Origin %r", origin)
            reason = f"Origin {origin!r} is not allowed"
        else:
            await self.app(scope, receive, send)
            return
        response = PlainTextResponse(
            f"403 Forbidden: {reason}. Use the URL the agent printed at start.\n", status_code=403
        )
        await response(scope, receive, send)
