"""The host registry (file and tailnet hosts), what a caller is shown, and fan-out selection."""

from __future__ import annotations

import pytest

from agent.core.fanout_run import select_hosts
from agent.errors import ConfigError, NoHostConfigured, UnknownHost
from agent.hosts.inventory import HostConfig
from agent.hosts.registry import HostRegistry, HostView, Presence, offline_message

FILE = HostConfig(name="bastion", address="192.0.2.1", user="ops")


def tailnet_host(name: str, *tags: str, keys: tuple[str, ...] = ()) -> HostConfig:
    return HostConfig(name=name, address=f"{name}.tailnet.test", user="ops", source="tailnet",
                      tags=tags, host_keys=keys, auth="tailscale-ssh" if keys else "key")


def test_tailnet_hosts_come_and_go_beside_the_file_hosts() -> None:
    registry = HostRegistry({"bastion": FILE}, "bastion", tailnet=True)
    changes: list[int] = []
    registry.subscribe(lambda: changes.append(len(registry)))
    clashes = registry.set_tailnet({
        "db-1": (tailnet_host("db-1", "tag:db", keys=("k",)), Presence(True, "linux")),
        "bastion": (tailnet_host("bastion"), Presence(True)),  # a file host has the name
    })
    assert clashes == ["bastion"]
    assert list(registry) == ["bastion", "db-1"] and registry["bastion"] is FILE
    assert registry.tags("db-1") == ("tag:db",) and registry.tags("bastion") == ()
    assert registry.view("db-1") == HostView(
        name="db-1", address="db-1.tailnet.test", user="ops", port=22, default=False,
        source="tailnet", online=True, os="linux", tags=("tag:db",), auth="tailscale-ssh",
        host_key_source="tailnet")
    assert registry.view("bastion").online is None and registry.view("bastion").default
    registry.set_tailnet({})
    assert list(registry) == ["bastion"] and changes == [2, 1]
    with pytest.raises(UnknownHost, match=r"'db-1'.*bastion"):
        registry.host("db-1")


def test_with_no_host_yet_the_error_says_where_hosts_come_from() -> None:
    with pytest.raises(NoHostConfigured):
        HostRegistry({}, None).host(None)
    with pytest.raises(ConfigError, match="no tailnet peer matches"):
        HostRegistry({}, None, tailnet=True).host("web-1")


def test_the_offline_answer_says_when_it_was_last_seen() -> None:
    seen = Presence(False, "linux", "2026-11-30T04:12:09+00:00")
    assert offline_message("web-3", seen).startswith(
        "host web-3 is offline (last seen 2026-11-30T04:12:09+00:00)")
    assert "no last-seen time" in offline_message("web-3", Presence(False))


def test_fan_out_selection_by_name_glob_tag_and_all() -> None:
    visible = ["web-1", "web-2", "db-1"]
    tags = {"web-1": ("tag:web",), "web-2": ("tag:web", "tag:eu"), "db-1": ("tag:db",)}

    def pick(*selectors: str) -> list[str]:
        return select_hosts(selectors, visible, lambda h: tags[h])

    assert pick("all") == visible and pick("ALL") == visible
    assert pick("tag:eu", "db-1") == ["web-2", "db-1"]
    assert pick("web-?", "tag:web") == ["web-1", "web-2"]  # each host once
    with pytest.raises(UnknownHost, match="'web-9'"):
        pick("web-1", "web-9")
    with pytest.raises(ConfigError, match="matches none"):
        pick("tag:nope", "x*")
    with pytest.raises(ConfigError, match="no hosts given"):
        pick()
