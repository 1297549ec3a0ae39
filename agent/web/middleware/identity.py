"""The identity gate: every HTTP request gets a tailnet identity, or a 403.

Userspace tailscaled hands a peer's connection to our loopback listener from
127.0.0.1:<port>, and only that tailscaled can name the caller behind it (WhoIs).
A local process that is not tailscaled gets 404 from WhoIs, hence 403 here.
`Tailscale-User-*` headers are never read. In local mode a fixed resolver names
the local user. The resolver is the one seam tests and modes replace.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from agent.access.grants import capability_grants
from agent.access.identity import Identity, local_user_identity

if TYPE_CHECKING:
    from tailscale_userspace import LocalAPI

log = logging.getLogger(__name__)

SCOPE_KEY = "tailnet_agent.identity"

IdentityResolver = Callable[[Scope], Awaitable[Identity | None]]


def request_identity(request: Request) -> Identity:
    identity = request.scope.get(SCOPE_KEY)
    if not isinstance(identity, Identity):
        raise RuntimeError("a request reached a handler without an identity: "
                           "is IdentityMiddleware installed?")
    return identity


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
        identity = Identity(login=who.login_name, node=who.node_name, tags=tuple(who.tags))
        grants = capability_grants(who.cap_map, identity.principal)
        return dataclasses.replace(identity, grants=grants) if grants else identity

    return resolve


def tailnet_peer_key(localapi: LocalAPI) -> Callable[[tuple[str, int]], Awaitable[str | None]]:
    """Which tailnet node a connection comes from (for per-peer connection caps): every
    peer arrives from 127.0.0.1, so only WhoIs can tell them apart."""

    async def key(address: tuple[str, int]) -> str | None:
        who = await localapi.whois(f"{address[0]}:{address[1]}")
        if who is None:
            return None
        return who.node_name or ",".join(who.tailscale_ips)

    return key


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
