"""`tailnet-agent trust HOST`: look at a host's key, then pin it on purpose."""

from __future__ import annotations

import asyncio
import sys

import asyncssh

from agent.hosts.inventory import HostConfig
from agent.settings import Settings
from agent.ssh import (
    SSHError,
    fetch_host_key,
    fingerprint,
    is_trusted,
    known_hosts_pattern,
    pin_host_key,
)
from agent.tailnet.node import dialer


async def _fetch(settings: Settings, host: HostConfig, through_tailnet: bool) -> asyncssh.SSHKey:
    async with dialer(settings, through_tailnet=through_tailnet, purpose="trust") as connector:
        return await fetch_host_key(host, connector=connector)


async def run_trust(
    settings: Settings, host_name: str, *, yes: bool = False, through_tailnet: bool = False
) -> int:
    host = settings.host(host_name)
    try:
        key = await _fetch(settings, host, through_tailnet)
    except (SSHError, OSError) as exc:
        hint = "" if through_tailnet else " (a tailnet host? add --tailnet)"
        print(f"Could not fetch the host key of {host.address}:{host.port}{hint}: {exc}",
              file=sys.stderr)
        return 1
    state = is_trusted(host, key)
    print(f"Host {host.name} ({known_hosts_pattern(host)}) presents a {key.get_algorithm()} key")
    print(f"  fingerprint {fingerprint(key)}")
    if state is True:
        print(f"This key is already pinned in {host.known_hosts}. Nothing to do.")
        return 0
    if state is False:
        print(f"WARNING: {host.known_hosts} records a DIFFERENT key for this host. If the host "
              "was not reinstalled or re-keyed on purpose, someone may be intercepting the "
              "connection: check the fingerprint with the host's administrator first.")
    else:
        print(f"This host is not in {host.known_hosts} yet. Compare the fingerprint with the "
              "one on the host (ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub).")
    if not yes:
        if not sys.stdin.isatty():
            print("Not pinned: no terminal to confirm on. Re-run with --yes once you have "
                  "checked the fingerprint.", file=sys.stderr)
            return 1
        answer = (await asyncio.to_thread(input, "Pin this key? [y/N] ")).strip().lower()
        if answer not in ("y", "yes"):
            print("Not pinned.")
            return 1
    pin_host_key(host, key)
    print(f"Pinned {fingerprint(key)} for {known_hosts_pattern(host)} in {host.known_hosts}.")
    return 0
