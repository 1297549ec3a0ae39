"""What a caller may see: their hosts and their commands, and nothing the policy hides.

Errors name only what the caller may use (a host the policy hides answers like one that
does not exist), and list_hosts, list_commands, server_status, the chat's host selector
and its system prompt all start from here. `AgentService` is a `CallerView`.
"""

from __future__ import annotations

from agent.inventory import HostConfig
from whitelist import Catalog, Command, UnknownCommandError

from .errors import NoDefaultHost, UnknownHost
from .hosts import HostRegistry, HostView
from .identity import Identity
from .policy import Policy


class CallerView:
    catalog: Catalog
    policy: Policy
    hosts: HostRegistry  # the file's hosts and the tailnet's, live

    def host(self, name: str | None, identity: Identity | None = None) -> HostConfig:
        """The named (or default) host. With `identity`, as that caller sees the hosts: a
        host the policy hides from them is unknown, errors list only their hosts, and a
        default host they may not use is no default. A caller who may use no host at all
        gets the host, so that the policy's refusal (which then names none) says why."""
        if identity is None or identity.is_operator or not self.hosts:
            return self.hosts.host(name)
        visible = self.visible_hosts(identity)
        chosen = name if name is not None else self.hosts.default
        if chosen is not None and chosen in self.hosts and (chosen in visible or not visible):
            return self.hosts[chosen]
        if name is None:
            raise NoDefaultHost(visible, caller=True)
        raise UnknownHost(name, visible)

    def command(self, name: str, identity: Identity) -> Command:
        """A catalog command; an unknown name is answered with the caller's commands only."""
        try:
            return self.catalog.get(name)
        except UnknownCommandError:
            raise UnknownCommandError(
                name, [c.name for c in self.visible_commands(identity)]) from None

    def visible_hosts(self, identity: Identity) -> list[str]:
        """The hosts (from files and the tailnet) some grant of this caller covers, by name
        or by the host's tailnet tags."""
        return self.policy.hosts_for(identity, list(self.hosts), self.hosts.tags)

    def host_views(self, identity: Identity) -> list[HostView]:
        """The hosts this caller may use, as list_hosts, the hosts panel and the prompt show
        them: name, address, user, source (file or tailnet), online, OS, tags, last seen,
        how the agent logs in and where the host key it accepts comes from."""
        return [self.hosts.view(name) for name in self.visible_hosts(identity)]

    def visible_commands(self, identity: Identity, category: str | None = None,
                         host: str | None = None) -> list[Command]:
        """The catalog commands this caller may run somewhere (what list_commands shows),
        optionally only those of one category, or only those that apply on `host` and that
        the policy lets this caller run there."""
        wanted = category.lower() if category else None
        commands = [
            c for c in self.catalog
            if (wanted is None or c.category.lower() == wanted) and self.policy.visible(identity, c)
        ]
        if host is None:
            return commands
        target = self.host(host, identity)
        if target.name not in (visible := self.visible_hosts(identity)):
            raise UnknownHost(target.name, visible)
        return [c for c in commands if c.applies_to(target.name, target.tags)
                and self.policy.decide(identity, c, target.name, target.tags).allowed]

    def catalog_for(self, identity: Identity) -> Catalog:
        """The catalog as this caller sees it (the chat's prompt and palette)."""
        return Catalog(commands={c.name: c for c in self.visible_commands(identity)})
