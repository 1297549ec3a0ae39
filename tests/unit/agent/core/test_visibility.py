"""What a caller may see (issue 15's visibility.py) applies to tailnet hosts too: by their
tags, in list_hosts, in errors, in list_commands for a host and in a fan-out's `all`."""

from __future__ import annotations

import pytest

from agent.access.identity import Identity
from agent.access.policy import parse_policy
from agent.core.approvals import Approvals
from agent.core.fanout_run import plan
from agent.core.visibility import CallerView
from agent.errors import UnknownHost
from agent.hosts.inventory import HostConfig
from agent.hosts.registry import HostRegistry, Presence
from whitelist import Catalog, load_catalog

ALICE = Identity(login="alice@example.com", node="laptop.tailnet.test")
OPERATOR = Identity(login="me", node="here", source="local")
POLICY = {"default": "none", "rules": [
    {"name": "alice-web", "who": ["alice@example.com"], "hosts": ["tag:web"]},
]}


def tailnet_host(name: str, *tags: str) -> HostConfig:
    return HostConfig(name=name, address=f"{name}.tailnet.test", user="ops", source="tailnet",
                      tags=tags)


class View(CallerView):
    def __init__(self) -> None:
        self.catalog: Catalog = load_catalog()
        self.policy = parse_policy(POLICY, "policy.yaml")
        self.approvals = Approvals()
        self.hosts = HostRegistry({"bastion": HostConfig(name="bastion", address="192.0.2.1",
                                                         user="ops")}, None, tailnet=True)
        self.hosts.set_tailnet({
            "web-1": (tailnet_host("web-1", "tag:web"), Presence(online=True, os="linux")),
            "web-2": (tailnet_host("web-2", "tag:web"), Presence(online=False)),
            "db-1": (tailnet_host("db-1", "tag:db"), Presence(online=True)),
        })


def test_a_caller_sees_the_tailnet_hosts_their_rules_name_by_tag_and_nothing_else() -> None:
    view = View()
    assert view.visible_hosts(ALICE) == ["web-1", "web-2"]
    assert [(v.name, v.source, v.tags, v.online) for v in view.host_views(ALICE)] == [
        ("web-1", "tailnet", ("tag:web",), True), ("web-2", "tailnet", ("tag:web",), False)]
    assert view.visible_hosts(OPERATOR) == ["bastion", "db-1", "web-1", "web-2"]


def test_a_hidden_tailnet_host_is_answered_like_one_that_does_not_exist() -> None:
    view = View()
    for name in ("db-1", "bastion"):
        with pytest.raises(UnknownHost) as hidden:
            view.host(name, ALICE)
        with pytest.raises(UnknownHost) as missing:
            view.host("nope", ALICE)
        assert str(hidden.value).replace(repr(name), "X") == \
            str(missing.value).replace("'nope'", "X")
        assert str(hidden.value).endswith("hosts you can use: web-1, web-2")
        with pytest.raises(UnknownHost):
            view.visible_commands(ALICE, host=name)
    assert view.host("db-1", OPERATOR).tags == ("tag:db",)


def test_a_fan_out_over_all_names_only_the_callers_hosts_and_runs_where_it_can() -> None:
    view = View()
    mine = plan(view, "hostname", {}, ["all"], ALICE)  # type: ignore[arg-type]
    assert mine.hosts == ("web-1", "web-2") and mine.runnable == ("web-1",)  # web-2 offline
    assert isinstance(plan(view, "hostname", {}, ["db-1"], ALICE).error,  # type: ignore[arg-type]
                      UnknownHost)
    assert plan(view, "hostname", {}, ["tag:db"], OPERATOR).hosts == (  # type: ignore[arg-type]
        "db-1",)
