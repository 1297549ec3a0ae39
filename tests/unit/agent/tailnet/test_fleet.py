"""Peers to hosts: which selector takes a peer, and what the host carries."""

from __future__ import annotations

import dataclasses
import datetime as dt
from pathlib import Path

from agent.hosts.inventory import AUTH_KEY, AUTH_TAILSCALE_SSH, TailnetSelector
from agent.hosts.registry import HostRegistry
from agent.tailnet.fleet import TailnetFleet, host_for
from tailscale_userspace import LocalAPI, Peer

SELECTORS = (
    TailnetSelector(user="admin", names=("db-9",), auth="key"),
    TailnetSelector(user="postgres", tags=("tag:db",)),
    TailnetSelector(user="ops", tags=("tag:web",), port=2222),
)


def peer(name: str, *tags: str, keys: tuple[str, ...] = (), online: bool | None = True,
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


def test_a_joining_peer_is_not_seen_yet_and_once_seen_online_can_only_go_offline() -> None:
    registry = HostRegistry({}, None, tailnet=True)
    fleet = TailnetFleet(SELECTORS, registry, LocalAPI(Path("/nonexistent.sock")))
    registered = dt.datetime(2026, 12, 6, 1, 0, tzinfo=dt.UTC)

    def netmap(online: bool | None) -> None:
        # What peers_from_status makes of the status: None while only registered.
        seen = None if online is not False else registered
        peers = [dataclasses.replace(peer("web-4", "tag:web", online=online, last_seen=seen),
                                     created=registered)]
        fleet._apply(peers, fleet._hosts(peers))

    netmap(None)
    assert registry.view("web-4").online is None and registry.view("web-4").last_seen is None
    assert registry.host("web-4").name == "web-4"  # callable: nothing refuses it
    netmap(True)
    assert registry.view("web-4").online is True
    # Gone offline, with no time of its own: control's LastSeen is still the registration's,
    # which reads as "not seen yet" again, but it was online a moment ago.
    netmap(None)
    view = registry.view("web-4")
    assert view.online is False and view.last_seen and view.last_seen > registered.isoformat()
