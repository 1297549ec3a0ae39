"""Host keys vouched for by the tailnet: the SSH host keys a node publishes in the netmap.

A node that runs Tailscale SSH publishes its SSH host keys through the control server
(the status's `sshHostKeys`; `tailscale ssh` checks servers against exactly these).
For such a host no known_hosts entry and no `trust` step is needed: the key it presents
must be one of them. A known_hosts entry that pins another key of a type the node
publishes contradicts the netmap; that is refused with both fingerprints rather than
silently preferring either source. A host that publishes nothing is checked against
known_hosts as before (known_hosts.py).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import asyncssh

from agent.hosts.inventory import HostConfig

from .errors import HostKeyContradicted, HostKeyNotPublished
from .known_hosts import fingerprint, known_hosts_matcher, known_hosts_pattern, trusted_keys

log = logging.getLogger(__name__)

KnownHosts = Callable[[str, str, int | None], Any]


def published_keys(host: HostConfig) -> list[asyncssh.SSHKey]:
    """The host keys the tailnet publishes for `host` (unparsable ones are skipped)."""
    keys: list[asyncssh.SSHKey] = []
    for line in host.host_keys:
        try:
            keys.append(asyncssh.import_public_key(line))
        except (asyncssh.KeyImportError, ValueError):
            log.warning("ignored a host key the tailnet publishes for %s: %.40s...",
                        host.name, line)
    return keys


def _shown(keys: list[asyncssh.SSHKey]) -> str:
    return ", ".join(fingerprint(k) for k in keys) or "none"


def host_key_check(host: HostConfig) -> KnownHosts:
    """What asyncssh's `known_hosts=` gets for `host`: the netmap's keys when the tailnet
    publishes some (those a known_hosts entry also pins, if it pins any), else known_hosts.
    Raises HostKeyContradicted, before any connection, when the two disagree."""
    published = published_keys(host)
    if not published:
        return known_hosts_matcher(host)
    pinned = trusted_keys(host)
    published_data = {k.public_data for k in published}
    published_types = {k.get_algorithm() for k in published}
    wrong = [k for k in pinned
             if k.get_algorithm() in published_types and k.public_data not in published_data]
    if wrong:
        raise HostKeyContradicted(
            host.name,
            f"{host.known_hosts} pins {_shown(wrong)} for {host.name} ({host.address}), but "
            f"the tailnet publishes {_shown(published)} for that node: the pinned entry "
            "disagrees with the netmap, so nothing was sent. If the node was re-keyed, remove "
            f"the stale entry (ssh-keygen -R '{known_hosts_pattern(host)}' -f "
            f"{host.known_hosts}); otherwise find out why before trusting either",
            fingerprint(wrong[0]),
        )
    pinned_data = {k.public_data for k in pinned}
    accepted = [k for k in published if k.public_data in pinned_data] or published

    def match(_name: str, _addr: str, _port: int | None) -> Any:
        return accepted, [], []

    return match


def not_published_error(host: HostConfig, presented: asyncssh.SSHKey | None) -> HostKeyNotPublished:
    shown = fingerprint(presented) if presented is not None else None
    return HostKeyNotPublished(
        host.name,
        f"the SSH host key of {host.name} ({host.address}:{host.port}) is "
        f"{shown or 'unknown'}, which is not one of the keys the tailnet publishes for that "
        f"node ({_shown(published_keys(host))}); nothing was sent. This can mean a man in "
        "the middle, or a node re-keyed whose new keys have not reached this agent's netmap "
        "yet: check the node (`tailscale status --json` lists its sshHostKeys)",
        shown,
    )
