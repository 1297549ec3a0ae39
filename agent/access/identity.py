"""Who is calling: the identity every HTTP request and tool call carries.

In tailnet mode it comes from tailscaled's WhoIs answer for the TCP connection
(agent.web.middleware.identity resolves it); in local mode (`serve --local`,
`demo`) and over stdio the caller is the person at this machine. Grants from the
tailnet policy travel with the identity, already decoded (agent.access.grants).
"""

from __future__ import annotations

import getpass
import secrets
import socket
from dataclasses import dataclass, field
from typing import Literal

from .grants import Grant

Source = Literal["tailnet", "local-operator", "local"]


@dataclass(frozen=True)
class Identity:
    login: str | None
    node: str | None
    tags: tuple[str, ...] = ()
    source: Source = "tailnet"
    # Grants the tailnet policy gives this caller through our app capability.
    grants: tuple[Grant, ...] = field(default=(), repr=False)

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
        """Who this caller is for everything bound to a caller (output handles, approvals,
        rate budget, sessions, their audit view): a person by login name, a tagged node
        (no login) by its tags *and* its node, so two nodes sharing a tag set stay apart."""
        if self.login:
            return f"{self.source}:{self.login}"
        return f"{self.source}:{self.principal}@{self.node or ''}"

    @property
    def is_operator(self) -> bool:
        """The person at this machine, who already holds the keys and the configuration."""
        return self.source != "tailnet"


def local_user_identity(source: Source = "local") -> Identity:
    return Identity(login=getpass.getuser(), node=socket.gethostname(), source=source)


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
