"""What a caller is shown about a host: one value type for list_hosts, the chat's hosts
panel and the system prompt, whatever the host's source (a file today, the tailnet too)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from agent.inventory import HostConfig

HostSource = Literal["file", "tailnet"]


@dataclass(frozen=True)
class HostView:
    name: str
    address: str
    user: str
    port: int
    default: bool = False
    source: HostSource = "file"
    online: bool | None = None  # None: not known (a host from a file)
    os: str = ""
    tags: tuple[str, ...] = ()
    last_seen: str | None = None  # ISO time, for an offline tailnet peer
    auth: str = "key"  # how the agent logs in: "key" (a private key file) or another scheme
    host_key_source: str = "known_hosts"  # where the host key it accepts comes from

    @classmethod
    def of(cls, host: HostConfig, *, default: bool) -> HostView:
        return cls(name=host.name, address=host.address, user=host.user, port=host.port,
                   default=default)
