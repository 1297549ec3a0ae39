"""Hosts from the tailnet: the inventory's `tailnet:` selectors applied to the live netmap.

The agent is itself a tailnet node, and its netmap already knows every peer: its
MagicDNS name, tags, OS, whether it is online, and (for nodes running Tailscale SSH)
its SSH host keys. `TailnetFleet` follows the netmap on tailscaled's IPN bus
(tailscale_userspace.watch_peers: no polling) and keeps the host registry's tailnet
part equal to the peers a selector matches, named by their MagicDNS short names: a
peer that joins is a host within moments, one that goes offline is shown offline (and
answered at once), one that leaves is gone. A tailnet host whose name a file host
already uses is a start-up error; one that appears later is left out, with a warning.

Last seen: control reports it for peers that are offline when the netmap is sent, but
Headscale's "went offline" update carries no time (v0.29), so for a peer seen going
offline while we watch, the time we learned it stands in.

A peer that has just joined is "not seen yet" (online None, see
tailscale_userspace/peers.py) until it connects: not offline, so a call to it is tried,
not refused. A peer once seen online is never "not seen yet" again while it stays.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import logging
from collections.abc import AsyncGenerator, Sequence

from agent.errors import ConfigError
from agent.hosts.inventory import HostConfig, TailnetSelector, check_host_name
from agent.hosts.registry import HostRegistry, Presence
from tailscale_userspace import LocalAPI, Peer, self_principal, watch_peers

log = logging.getLogger("tailnet_agent.fleet")

FIRST_NETMAP_TIMEOUT = 30.0


def host_for(peer: Peer, selectors: Sequence[TailnetSelector], tailnet_self: str
             ) -> tuple[HostConfig, Presence] | None:
    """The host a peer becomes under the first selector that matches it, or None."""
    name = peer.short_name
    for selector in selectors:
        if selector.matches(name, peer.tags):
            # The MagicDNS name: tailscaled's SOCKS5 proxy resolves it, and it is the
            # name a known_hosts entry for the peer would carry.
            address = peer.dns_name or (peer.ips[0] if peer.ips else name)
            host = selector.host(name, address, tags=peer.tags, host_keys=peer.ssh_host_keys,
                                 tailnet_self=tailnet_self)
            seen = peer.last_seen.isoformat(timespec="seconds") if peer.last_seen else None
            return host, Presence(online=peer.online, os=peer.os, last_seen=seen)
    return None


def presence_word(presence: Presence) -> str:
    return {True: "online", False: "offline", None: "not seen yet"}[presence.online]


class TailnetFleet:
    """Keeps `registry`'s tailnet hosts equal to the matching peers of our node."""

    def __init__(self, selectors: Sequence[TailnetSelector], registry: HostRegistry,
                 localapi: LocalAPI) -> None:
        self.selectors = tuple(selectors)
        self.registry = registry
        self.localapi = localapi
        self._peers: AsyncGenerator[list[Peer], None] | None = None
        self._task: asyncio.Task[None] | None = None
        self._self = ""
        self._warned: set[str] = set()
        self._went_offline: dict[str, str] = {}  # host -> when we saw it go offline
        self._seen_online: set[str] = set()  # hosts seen online since they appeared

    async def start(self, timeout: float = FIRST_NETMAP_TIMEOUT) -> None:  # noqa: ASYNC109
        """Apply the netmap as it is now, then follow it. Raises ConfigError when a tailnet
        host's name clashes with a host from a file."""
        for selector in self.selectors:
            if not selector.tags:
                # A tag can be applied only by its owners (tagOwners); a machine name is
                # whatever any tailnet user calls their machine.
                log.warning("the tailnet selector for %s matches by name only: any tailnet "
                            "user can name a machine to match it; add `tags:`",
                            ", ".join(selector.names))
        self._self = self_principal(await self.localapi.status())
        self._peers = watch_peers(self.localapi)
        try:
            async with asyncio.timeout(timeout):
                first = await anext(self._peers)
        except TimeoutError:
            await self.stop()
            raise ConfigError(f"the agent's tailscaled sent no netmap within {timeout:g} s; "
                              "is the node connected to its control server?") from None
        hosts = self._hosts(first)
        clashes = self.registry.clashes(hosts)
        if clashes:
            await self.stop()
            raise ConfigError(
                f"tailnet host name(s) {', '.join(clashes)} clash with hosts of the same name "
                "from the inventory or REMOTE_HOST_NAME: rename those hosts, or narrow the "
                "inventory's `tailnet:` selectors so they do not match those peers")
        self._apply(first, hosts)
        self._task = asyncio.create_task(self._follow(), name="tailnet-fleet")

    async def _follow(self) -> None:
        assert self._peers is not None
        async for peers in self._peers:
            try:
                self._apply(peers, self._hosts(peers))
            except Exception:  # a bad netmap must not stop the following ones
                log.exception("could not apply a netmap change")

    def _hosts(self, peers: list[Peer]) -> dict[str, tuple[HostConfig, Presence]]:
        hosts: dict[str, tuple[HostConfig, Presence]] = {}
        for peer in peers:
            found = host_for(peer, self.selectors, self._self)
            if found is None:
                continue
            name = found[0].name
            try:
                check_host_name(name, f"tailnet peer {peer.dns_name or peer.hostname}")
            except ConfigError as exc:
                self._warn_once(name, f"left out: {exc}")
                continue
            hosts[name] = found
        return hosts

    def _apply(self, peers: list[Peer], hosts: dict[str, tuple[HostConfig, Presence]]) -> None:
        before = {name: self.registry.presence(name).online for name in self.registry
                  if self.registry[name].source == "tailnet"}
        now = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
        self._seen_online &= set(hosts)  # one that left and joins again starts afresh
        for name, (host, presence) in list(hosts.items()):
            if presence.online:
                self._seen_online.add(name)
            elif presence.online is None and name in self._seen_online:
                # It was online, so this is not the moment it registered: it went offline
                # and control's LastSeen is still the registration's (no time came with it).
                presence = dataclasses.replace(presence, online=False)
                hosts[name] = host, presence
            if presence.online is not False:
                self._went_offline.pop(name, None)
            elif presence.last_seen is None and (before.get(name) or name in self._went_offline):
                seen = self._went_offline.setdefault(name, now)
                hosts[name] = host, dataclasses.replace(presence, last_seen=seen)
        for name in self.registry.set_tailnet(hosts):
            self._warn_once(name, f"tailnet peer {name} is left out: a host from a file has "
                            "that name")
        for name, (_, presence) in hosts.items():
            if name not in before:
                log.info("tailnet host %s appeared (%s)", name, presence_word(presence))
            elif before[name] != presence.online:
                log.info("tailnet host %s is %s", name, presence_word(presence))
        for name in set(before) - set(hosts):
            log.info("tailnet host %s left", name)

    def _warn_once(self, key: str, message: str) -> None:
        if key not in self._warned:
            self._warned.add(key)
            log.warning("%s", message)

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        peers, self._peers = self._peers, None
        if peers is not None:
            with contextlib.suppress(Exception):
                await peers.aclose()
