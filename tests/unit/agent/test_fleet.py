"""Peers to hosts: which selector takes a peer, and what the host carries."""

from __future__ import annotations

import datetime as dt

from agent.fleet import host_for
from agent.inventory import AUTH_KEY, AUTH_TAILSCALE_SSH, TailnetSelector
from tailscale_userspace import Peer

SELECTORS = (
    TailnetSelector(user="admin", names=("db-9",), auth="key"),
    TailnetSelector(user="postgres", tags=("tag:db",)),
    TailnetSelector(user="ops", tags=("tag:web",), port=2222),
)


def peer(name: str, *tags: str, keys: tuple[str, ...] = (), online: bool = True,
         last_seen: dt.datetime | None = None) -> Peer:
    return Peer(id=name, hostname=name, dns_name=f"{name}.tailnet.test", ips=("100.64.0.9",),
                tags=tags, user="", os="linux", online=online, last_seen=last_seen,
                ssh_host_keys=keys)


def test_the_first_matching_selector_decides_the_login() -> None:
    found = host_for(peer("db-1", "tag:db", keys=("k",)), SELECTORS, "tag:agent")
    assert found is not None
    host, presence = found
    assert (host.name, host.address, host.user, host.auth, host.tailnet_self) == (
        "db-1", "db-1.tailnet.test", "postgres", AUTH_TAILSCALE_SSH, "tag:agent")
    assert presence.online and presence.os == "linux"
    special = host_for(peer("db-9", "tag:db", keys=("k",)), SELECTORS, "")
    assert special is not None and special[0].user == "admin" and special[0].auth == AUTH_KEY
    web = host_for(peer("web-1", "tag:web", keys=("k",)), SELECTORS, "")
    assert web is not None and web[0].auth == AUTH_KEY and web[0].port == 2222


def test_peers_no_selector_matches_are_not_hosts() -> None:
    assert host_for(peer("laptop"), SELECTORS, "") is None


def test_an_offline_peer_carries_when_it_was_last_seen() -> None:
    seen = dt.datetime(2026, 11, 30, 4, 12, 9, tzinfo=dt.UTC)
    found = host_for(peer("db-2", "tag:db", online=False, last_seen=seen), SELECTORS, "")
    assert found is not None
    assert found[1].online is False and found[1].last_seen == "2026-11-30T04:12:09+00:00"
