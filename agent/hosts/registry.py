"""The hosts the agent knows, and what a caller is shown about each.

`HostRegistry` holds the hosts from files (the inventory, REMOTE_*), fixed for the
agent's life, and the hosts the tailnet brings (agent/tailnet/fleet.py applies the inventory's
`tailnet:` selectors to the live netmap), with each tailnet host's presence (online,
OS, last seen). It is a live `Mapping` of name -> HostConfig, so the SSH pool sees a
host the moment it appears. `HostView` is one host as list_hosts, the chat's hosts
panel and the system prompt show it, whatever its source.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Literal

from agent.errors import ConfigError, NoDefaultHost, NoHostConfigured, UnknownHost
from agent.hosts.inventory import AUTH_KEY, HostConfig

HostSource = Literal["file", "tailnet"]


@dataclass(frozen=True)
class Presence:
    """What the tailnet says about a host right now (nothing, for a host from a file)."""

    online: bool | None = None  # None: not known
    os: str = ""
    last_seen: str | None = None  # ISO time control last saw it, when it reports one


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
    last_seen: str | None = None  # ISO time, for a tailnet peer that reports one
    auth: str = AUTH_KEY  # "key" (a private key file) or "tailscale-ssh" (keyless)
    host_key_source: str = "known_hosts"  # "known_hosts", or "tailnet" (the netmap)

    @classmethod
    def of(cls, host: HostConfig, *, default: bool, presence: Presence | None = None
           ) -> HostView:
        seen = presence or Presence()
        return cls(name=host.name, address=host.address, user=host.user, port=host.port,
                   default=default, source="tailnet" if host.source == "tailnet" else "file",
                   online=seen.online, os=seen.os, tags=host.tags, last_seen=seen.last_seen,
                   auth=host.auth,
                   host_key_source="tailnet" if host.host_keys else "known_hosts")


def offline_message(name: str, presence: Presence) -> str:
    seen = f"last seen {presence.last_seen}" if presence.last_seen else (
        "the control server reports no last-seen time")
    return (f"host {name} is offline ({seen}); nothing was sent. It is back as soon as its "
            "tailscaled reconnects: check that the machine is up")


class HostRegistry(Mapping[str, HostConfig]):
    """Every host by name: the file's, then the tailnet's (live)."""

    def __init__(self, file_hosts: Mapping[str, HostConfig], default: str | None, *,
                 tailnet: bool = False) -> None:
        self._file = dict(file_hosts)
        self.default = default
        self.tailnet_enabled = tailnet  # the inventory has `tailnet:` selectors
        self._tailnet: dict[str, HostConfig] = {}
        self._presence: dict[str, Presence] = {}
        self._listeners: list[Callable[[], None]] = []

    # -- Mapping ------------------------------------------------------------------------

    def __getitem__(self, name: str) -> HostConfig:
        found = self._file.get(name) or self._tailnet.get(name)
        if found is None:
            raise KeyError(name)
        return found

    def __iter__(self) -> Iterator[str]:
        yield from self._file
        yield from sorted(self._tailnet)

    def __len__(self) -> int:
        return len(self._file) + len(self._tailnet)

    # -- lookups ------------------------------------------------------------------------

    def host(self, name: str | None) -> HostConfig:
        """The named host, or the default one; errors say which hosts exist."""
        if not self:
            if self.tailnet_enabled:
                raise ConfigError("no host yet: no tailnet peer matches the inventory's "
                                  "`tailnet:` selectors; check the tags and names there")
            raise NoHostConfigured()
        chosen = name if name is not None else self.default
        if chosen is None:
            raise NoDefaultHost(self)
        try:
            return self[chosen]
        except KeyError:
            raise UnknownHost(chosen, self) from None

    def presence(self, name: str) -> Presence:
        return self._presence.get(name) or Presence()

    def tags(self, name: str) -> tuple[str, ...]:
        host = self._file.get(name) or self._tailnet.get(name)
        return host.tags if host is not None else ()

    def view(self, name: str) -> HostView:
        return HostView.of(self[name], default=name == self.default,
                           presence=self._presence.get(name))

    # -- the tailnet's hosts --------------------------------------------------------------

    def clashes(self, names: Mapping[str, object]) -> list[str]:
        """Tailnet host names that a file host already uses."""
        return sorted(set(names) & set(self._file))

    def set_tailnet(self, hosts: Mapping[str, tuple[HostConfig, Presence]]) -> list[str]:
        """Replace the tailnet's hosts; a name a file host uses is left out and returned."""
        clashes = self.clashes(hosts)
        kept = {name: pair for name, pair in hosts.items() if name not in clashes}
        self._tailnet = {name: host for name, (host, _) in kept.items()}
        self._presence = {name: presence for name, (_, presence) in kept.items()}
        for listener in self._listeners:
            listener()
        return clashes

    def subscribe(self, listener: Callable[[], None]) -> None:
        """Call `listener` after every change of the tailnet's hosts."""
        self._listeners.append(listener)
