"""Peers from a LocalAPI status document, as tailscaled v1.98 writes it."""

from __future__ import annotations

import datetime as dt
from typing import Any

from tailscale_userspace import Peer, peers_from_status, self_principal

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAINPmBt1W7N/sv2ivJU+L0wSgDvip5RWvI7EfY0YK2/vG"


def status(**peers: dict[str, Any]) -> dict[str, Any]:
    return {
        "Self": {"DNSName": "agent.tailnet.test.", "Tags": ["tag:agent"], "UserID": 9},
        "User": {"3": {"LoginName": "alice"}, "9": {"LoginName": "ops"}},
        "Peer": {f"nodekey:{name}": data for name, data in peers.items()},
    }


def test_a_peer_carries_what_the_netmap_knows() -> None:
    (db, laptop) = peers_from_status(status(
        db={"ID": "n1", "HostName": "db-1", "DNSName": "db-1.tailnet.test.",
            "TailscaleIPs": ["fd7a:115c:a1e0::2", "100.64.0.2"], "Tags": ["tag:db"],
            "OS": "linux", "Online": True, "LastSeen": "0001-01-01T00:00:00Z",
            "sshHostKeys": [KEY], "UserID": 2147455555},
        laptop={"ID": "n2", "HostName": "Alice's MacBook", "DNSName": "laptop.tailnet.test.",
                "TailscaleIPs": ["100.64.0.3"], "OS": "macOS", "Online": False,
                "LastSeen": "2026-11-30T03:24:15.123456789Z", "UserID": 3},
    ))
    assert db == Peer(id="n1", hostname="db-1", dns_name="db-1.tailnet.test",
                      ips=("100.64.0.2", "fd7a:115c:a1e0::2"), tags=("tag:db",), user="",
                      os="linux", online=True, last_seen=None, ssh_host_keys=(KEY,))
    assert db.short_name == "db-1" and db.runs_tailscale_ssh
    assert laptop.user == "alice" and not laptop.runs_tailscale_ssh
    assert laptop.last_seen == dt.datetime(2026, 11, 30, 3, 24, 15, 123456, tzinfo=dt.UTC)


def test_odd_status_values_do_not_break_parsing() -> None:
    (peer,) = peers_from_status(status(x={"HostName": "bare", "LastSeen": "yesterday",
                                          "Tags": None, "sshHostKeys": [1, ""]}))
    assert peer.short_name == "bare"  # no MagicDNS name: the hostname
    assert peer.last_seen is None and peer.tags == () and peer.ssh_host_keys == ()
    assert peers_from_status({}) == []


def test_how_the_tailnet_policy_names_this_node() -> None:
    assert self_principal(status()) == "tag:agent"
    untagged = status()
    untagged["Self"] = {"UserID": 9}
    assert self_principal(untagged) == "ops@"  # Headscale CLI users have no domain
    untagged["User"]["9"]["LoginName"] = "ops@example.com"
    assert self_principal(untagged) == "ops@example.com"


def test_a_node_registered_but_not_yet_connected_is_not_seen_yet_rather_than_offline() -> None:
    # Headscale v0.29 registers a node with LastSeen = now and offline until its first map
    # poll; the status reads that as Online false with a LastSeen (a few ms before Created).
    joining, gone = peers_from_status(status(
        joining={"ID": "n1", "DNSName": "a-web-4.tailnet.test.", "Online": False,
                 "Created": "2026-12-06T01:00:00.004Z", "LastSeen": "2026-12-06T01:00:00.001Z"},
        gone={"ID": "n2", "DNSName": "b-web-3.tailnet.test.", "Online": False,
              "Created": "2026-12-06T01:00:00Z", "LastSeen": "2026-12-06T01:09:30Z"},
    ))
    assert (joining.online, joining.last_seen) == (None, None)
    assert joining.created == dt.datetime(2026, 12, 6, 1, 0, 0, 4000, tzinfo=dt.UTC)
    assert gone.online is False
    assert gone.last_seen == dt.datetime(2026, 12, 6, 1, 9, 30, tzinfo=dt.UTC)
