"""Quick checks of the set-up that need no network: key files, pinned host keys, hosts that
only the tailnet reaches. `doctor` prints them; `serve --local` and `mcp --stdio` warn
about them at start so a mistake shows before the first call fails."""

from __future__ import annotations

import ipaddress
import logging
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from agent.hosts.inventory import HostConfig
from agent.settings import Settings
from agent.ssh import known_hosts_pattern, trusted_keys

log = logging.getLogger("tailnet_agent.checks")

Level = Literal["ok", "warn", "fail"]
# Tailscale's address ranges: CGNAT 100.64.0.0/10 and its ULA prefix.
_TAILNET_NETS = (ipaddress.ip_network("100.64.0.0/10"), ipaddress.ip_network("fd7a:115c:a1e0::/48"))


@dataclass(frozen=True)
class Finding:
    level: Level
    what: str
    fix: str = ""


def needs_tailnet(host: HostConfig) -> bool:
    """Whether only a tailnet node can reach this address (a tailnet IP or MagicDNS name)."""
    try:
        address = ipaddress.ip_address(host.address)
    except ValueError:
        return host.address.rstrip(".").endswith(".ts.net")
    return any(address in net for net in _TAILNET_NETS)


def key_finding(host: HostConfig) -> Finding:
    if host.key_path is None:
        if host.client_key_paths():
            return Finding("ok", f"{host.name}: no key file configured; offering "
                           f"{', '.join(map(str, host.client_key_paths()))}")
        return Finding("fail", f"{host.name}: no SSH key (no REMOTE_SSH_KEY_PATH / `key:` and "
                       "no ~/.ssh/id_ed25519 or id_rsa)",
                       "set REMOTE_SSH_KEY_PATH to a private key, or create one with "
                       "ssh-keygen -t ed25519")
    path = Path(host.key_path).expanduser()
    if not path.is_file():
        return Finding("fail", f"{host.name}: key file {path} is missing",
                       "set REMOTE_SSH_KEY_PATH (or `key:` in the inventory) to an existing "
                       "private key, or create one with ssh-keygen -t ed25519")
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        return Finding("fail", f"{host.name}: key file {path} is readable by others "
                       f"(mode {mode:o})", f"chmod 600 {path}")
    return Finding("ok", f"{host.name}: key file {path} (mode {mode:o})")


def known_hosts_finding(host: HostConfig) -> Finding:
    pattern = known_hosts_pattern(host)
    if trusted_keys(host):
        return Finding("ok", f"{host.name}: {pattern} has a pinned key in {host.known_hosts}")
    return Finding("fail", f"{host.name}: the host key of {pattern} is not pinned in "
                   f"{host.known_hosts}", f"tailnet-agent trust {host.name}")


def quick_findings(settings: Settings) -> list[Finding]:
    if not settings.hosts:
        return [Finding("fail", "no SSH host configured",
                        "set REMOTE_HOST and REMOTE_USER (or TAILNET_AGENT_INVENTORY), "
                        "or try `tailnet-agent demo`")]
    findings: list[Finding] = []
    for host in settings.hosts.values():
        findings += [key_finding(host), known_hosts_finding(host)]
    return findings


async def warn_about_hosts(settings: Settings) -> None:
    """Log a warning per problem the quick checks find (start-up of --local and stdio)."""
    for finding in quick_findings(settings):
        if finding.level != "ok":
            log.warning("%s -- fix: %s", finding.what, finding.fix)
