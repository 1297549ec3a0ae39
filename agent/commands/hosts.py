"""`tailnet-agent hosts`: the configured SSH hosts, one line each."""

from __future__ import annotations

from agent.settings import Settings
from agent.ssh import known_hosts_pattern, trusted_keys


def run_hosts(settings: Settings) -> int:
    for selector in settings.tailnet_selectors:
        which = " and ".join(part for part in (
            f"tagged {' or '.join(selector.tags)}" if selector.tags else "",
            f"named {' or '.join(selector.names)}" if selector.names else "") if part)
        print(f"tailnet: peers {which} as {selector.user}, port {selector.port}, "
              f"auth {selector.auth} (listed live by `serve`: list_hosts)")
    if not settings.hosts and settings.tailnet_selectors:
        return 0
    if not settings.hosts:
        print("no SSH host configured: set REMOTE_HOST and REMOTE_USER, or "
              "TAILNET_AGENT_INVENTORY / --inventory (or try `tailnet-agent demo`)")
        return 1
    for host in settings.hosts.values():
        default = " (default)" if host.name == settings.default_host else ""
        pinned = ("host key pinned" if trusted_keys(host)
                  else f"host key not pinned: tailnet-agent trust {host.name}")
        print(f"{host.name}{default}  {host.target}  {pinned} "
              f"[{known_hosts_pattern(host)} in {host.known_hosts}]")
    return 0
