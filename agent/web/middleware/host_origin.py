"""Host and Origin checks for every route: the defence against DNS rebinding.

A browser page on evil.example that resolves its own name to our address could
otherwise talk to the agent with the victim's tailnet identity. We accept only
Host values that name this node (its tailnet names and IPs, or loopback in local
mode), and refuse any Origin that is not this very origin (same host and port as the
Host header). Both are parsed strictly (RFC 3986 host and port, nothing else), so
`localhost:80@evil.com` or `[::1]evil` are refused, not read as a name we know. The
MCP SDK has its own check, but it is off for non-loopback hosts unless configured;
this middleware covers every route, the chat page included.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable

from starlette.datastructures import Headers
from starlette.responses import PlainTextResponse
from starlette.types import ASGIApp, Receive, Scope, Send

log = logging.getLogger(__name__)

LOOPBACK_NAMES = ("127.0.0.1", "localhost", "[::1]")


_AUTHORITY = re.compile(
    r"(?P<host>\[[0-9a-f:.]+\]|[a-z0-9](?:[a-z0-9._-]*[a-z0-9.])?)(?::(?P<port>[0-9]{1,5}))?",
    re.ASCII,
)
_DEFAULT_PORTS = {"http": 80, "https": 443}


def split_authority(value: str, scheme: str = "http") -> tuple[str, int] | None:
    """'name:port' -> ('name', port); '[::1]:8080' -> ('[::1]', 8080); the scheme's port
    when there is none; None when the value is anything but a host and an optional port."""
    match = _AUTHORITY.fullmatch(value.strip().lower())
    if match is None:
        return None
    port = int(match["port"]) if match["port"] else _DEFAULT_PORTS.get(scheme, 80)
    if not 0 < port < 65536:
        return None
    return match["host"].rstrip("."), port


class HostOriginMiddleware:
    def __init__(self, app: ASGIApp, allowed_names: Iterable[str]) -> None:
        self.app = app
        self.allowed = {name.lower().rstrip(".") for name in allowed_names}

    def allow(self, names: Iterable[str]) -> None:
        """Add names learned later (the tailnet IP and MagicDNS name after joining)."""
        self.allowed.update(name.lower().rstrip(".") for name in names)

    def _host_ok(self, host: str | None) -> bool:
        parsed = split_authority(host or "")
        return parsed is not None and parsed[0] in self.allowed

    def _origin_ok(self, origin: str | None, host: str | None, scheme_served: str) -> bool:
        if origin is None:
            return True  # non-browser clients send none
        scheme, sep, rest = origin.partition("://")
        if not sep or scheme != scheme_served:
            return False
        # Same origin: the page was served by this very host and port.
        return split_authority(rest, scheme) == split_authority(host or "", scheme)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        host, origin = headers.get("host"), headers.get("origin")
        if not self._host_ok(host):
            log.warning("refused a request with Host %r (not one of this node's names)", host)
            reason = f"Host {host!r} is not a name of this agent"
        elif not self._origin_ok(origin, host, scope.get("scheme", "http")):
            log.warning("refused a request with Origin %r", origin)
            reason = f"Origin {origin!r} is not allowed"
        else:
            await self.app(scope, receive, send)
            return
        response = PlainTextResponse(
            f"403 Forbidden: {reason}. Use the URL the agent printed at start.\n", status_code=403
        )
        await response(scope, receive, send)
