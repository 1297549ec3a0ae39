"""Who is calling: the identity every HTTP request and tool call carries.

In tailnet mode the identity comes from tailscaled's WhoIs answer for the TCP
connection (see DESIGN.md: userspace inbound connections reach us from
127.0.0.1:<port>, and only the tailscaled that forwarded a connection can name
its caller). In local mode (`serve --local`, `demo`) the server listens on
loopback only and every caller is the local user. The resolver is the one seam
that decides this; `IdentityMiddleware` refuses any request it cannot resolve.
"""

from __future__ import annotations

import getpass
import json
import logging
import secrets
import socket
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.types import ASGIApp, Receive, Scope, Send

if TYPE_CHECKING:
    from tailscale_userspace import LocalAPI

log = logging.getLogger(__name__)

Source = Literal["tailnet", "local-operator", "local"]

SCOPE_KEY = "tailnet_agent.identity"

# The app capability a tailnet policy grant uses to give rights in this service
# (Tailscale's `<domain>/cap/<name>` style). Its values are read by agent.policy.
CAPABILITY = "tailnet-agent.dev/cap/run"


@dataclass(frozen=True)
class Identity:
    login: str | None
    node: str | None
    tags: tuple[str, ...] = ()
    source: Source = "tailnet"
    # The values of CAPABILITY in the caller's WhoIs CapMap, each as JSON text
    # (text keeps the dataclass hashable); agent.policy turns them into grants.
    capabilities: tuple[str, ...] = field(default=(), repr=False)

    @property
    def principal(self) -> str:
        """The login name, or the tags of a tagged node."""
        if self.login:
            return self.login
        if self.tags:
            return ",".join(self.tags)
        return "unknown"

    @property
    def display(self) -> str:
        if self.source == "local":
            return f"{self.principal} (local mode)"
        if self.source == "local-operator":
            return f"{self.principal} (local operator, not via tailnet)"
        return f"{self.principal} ({self.node})" if self.node else self.principal

    @property
    def key(self) -> str:
        return f"{self.source}:{self.principal}"


def local_user_identity(source: Source = "local") -> Identity:
    return Identity(login=getpass.getuser(), node=socket.gethostname(), source=source)


def request_identity(request: Request) -> Identity:
    identity = request.scope.get(SCOPE_KEY)
    if not isinstance(identity, Identity):
        raise RuntimeError("a request reached a handler without an identity: "
                           "is IdentityMiddleware installed?")
    return identity


class IdentityTokens:
    """Unguessable tokens standing for an identity inside this process.

    The chat page calls our MCP tools through an in-process MCP client, where no
    HTTP request carries the caller; it passes one of these tokens in the call's
    `_meta`. A remote client cannot forge one, and HTTP calls ignore them.
    """

    def __init__(self) -> None:
        self._tokens: dict[str, Identity] = {}

    def issue(self, identity: Identity) -> str:
        token = secrets.token_urlsafe(24)
        self._tokens[token] = identity
        return token

    def resolve(self, token: object) -> Identity | None:
        return self._tokens.get(token) if isinstance(token, str) else None

    def revoke(self, token: str) -> None:
        self._tokens.pop(token, None)


IdentityResolver = Callable[[Scope], Awaitable[Identity | None]]


def fixed_resolver(identity: Identity) -> IdentityResolver:
    """Local mode: the listener is on loopback only, so every caller is this machine's user."""

    async def resolve(scope: Scope) -> Identity:
        return identity

    return resolve


def tailnet_resolver(localapi: LocalAPI, *, local_operator: bool = False) -> IdentityResolver:
    """Ask tailscaled who is on the other end of this connection.

    tailscaled answers only for connections it forwarded from the tailnet; a local
    process gets 404 (None). With `local_operator`, such connections are accepted
    as the person at this machine, and their identity says so.
    """
    operator = local_user_identity("local-operator")

    async def resolve(scope: Scope) -> Identity | None:
        client = scope.get("client")
        if not client:
            return None
        host, port = client[0], client[1]
        who = await localapi.whois(f"{host}:{port}")
        if who is None:
            return operator if local_operator and host in ("127.0.0.1", "::1") else None
        return Identity(login=who.login_name, node=who.node_name, tags=tuple(who.tags),
                        capabilities=capability_values(who.cap_map))

    return resolve


def capability_values(cap_map: Mapping[str, Any]) -> tuple[str, ...]:
    """Our capability's values from a WhoIs CapMap (a list of JSON values per capability)."""
    values = cap_map.get(CAPABILITY) or ()
    if not isinstance(values, list | tuple):
        values = (values,)
    return tuple(json.dumps(v, sort_keys=True) for v in values)


class IdentityMiddleware:
    """Resolve the caller of every HTTP request; refuse with 403 when nobody vouches for it."""

    def __init__(self, app: ASGIApp, resolver: IdentityResolver) -> None:
        self.app = app
        self.resolver = resolver

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        try:
            identity = await self.resolver(scope)
        except Exception as exc:  # tailscaled down or restarting: fail closed
            log.warning("could not resolve the caller's tailnet identity: %s", exc)
            identity = None
        if identity is None:
            client = scope.get("client")
            log.warning("refused a request from %s: not a tailnet peer", client)
            response = PlainTextResponse(
                "403 Forbidden: this service answers tailnet peers only. Connect through your "
                "tailnet (http://<agent tailnet name>:<port>/) from a device logged in to it.\n",
                status_code=403,
            )
            await response(scope, receive, send)
            return
        scope[SCOPE_KEY] = identity
        await self.app(scope, receive, send)
