"""What a caller may see and run: their hosts and their commands, nothing the policy hides.

Errors name only what the caller may use (a host the policy hides answers like one that
does not exist), and list_hosts, list_commands, server_status, the chat's host selector
and its system prompt all start from here. `decide` is the one answer to "may this caller
run this command on this host" (the policy and the catalog's host binding), and `prepare`
decides a whole call once (agent.core.prepare). `AgentService` is a `CallerView`.
"""

from __future__ import annotations

from collections.abc import Mapping

from agent.access.identity import Identity
from agent.access.policy import Decision, Policy
from agent.errors import CallRefused, NoDefaultHost, NotForHost, UnknownHost
from agent.hosts.inventory import HostConfig
from agent.hosts.query import HostPage, HostQuery, query_hosts
from agent.hosts.registry import HostRegistry, HostView
from whitelist import Catalog, Command, UnknownCommandError

from .approvals import Approvals
from .prepare import Preparation, prepare


class CallerView:
    catalog: Catalog
    policy: Policy
    hosts: HostRegistry  # the file's hosts and the tailnet's, live
    approvals: Approvals  # time-limited approvals still running

    def host(self, name: str | None, identity: Identity | None = None) -> HostConfig:
        """The named (or default) host. With `identity`, as that caller sees the hosts: a
        host the policy hides from them is unknown, errors list only their hosts, and a
        default host they may not use is no default."""
        if identity is None or identity.is_operator or not self.hosts:
            return self.hosts.host(name)
        chosen = name if name is not None else self.hosts.default
        if chosen is not None and chosen in self.hosts and self.policy.covers(
                identity, chosen, self.hosts.tags(chosen)):
            return self.hosts[chosen]
        visible = self.visible_hosts(identity)
        if name is None:
            raise NoDefaultHost(visible, caller=True)
        raise UnknownHost(name, visible)

    def decide(self, identity: Identity, command: Command, target: HostConfig) -> Decision:
        """May this caller run `command` on `target`? The policy's answer (PolicyDenied
        names the rule) and the catalog's host binding (NotForHost). The one decision a
        call (agent.core.prepare), list_commands for a host and the hosts panel all ask."""
        decision = self.policy.check(identity, command, target.name, target.tags)
        if not command.applies_to(target.name, target.tags):
            raise NotForHost(
                f"{command.name!r} does not apply to host {target.name!r}: the catalog "
                f"binds it to {', '.join(command.hosts)}; nothing ran. list_commands "
                f"with host={target.name!r} shows what applies there.")
        return decision

    def prepare(self, command_name: str, arguments: Mapping[str, object], *,
                host: str | None, identity: Identity) -> Preparation:
        """The call decided once, for every front end to show and `execute` to run
        (agent.core.prepare)."""
        return prepare(self, command_name, arguments, host=host, identity=identity)

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

    def host_page(self, identity: Identity, query: HostQuery) -> HostPage:
        """One page of this caller's hosts, filtered (list_hosts, the hosts resource, the
        chat's hosts panel: agent/hosts/query.py)."""
        return query_hosts(self.host_views(identity), query)

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
        return [c for c in commands if self.may_run(identity, c, target)]

    def may_run(self, identity: Identity, command: Command, target: HostConfig) -> bool:
        """`decide`, as a yes or no (what to list or offer)."""
        try:
            self.decide(identity, command, target)
        except CallRefused:
            return False
        return True

    def catalog_for(self, identity: Identity) -> Catalog:
        """The catalog as this caller sees it (the chat's prompt and palette)."""
        return Catalog(commands={c.name: c for c in self.visible_commands(identity)})
