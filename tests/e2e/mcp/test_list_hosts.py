"""list_hosts and the hosts resource over a fleet of 1,001 hosts, through the official MCP
SDK client: a page at a time, filtered by tag, online state and name, small whatever the
fleet's size, and only the caller's own hosts.

The fleet: one host from the inventory (the default), and 1,000 tailnet peers (600 web,
300 app, 100 db; every 50th offline) handed to the host registry as agent/tailnet/fleet.py hands
it the netmap's peers (HostRegistry.set_tailnet). list_hosts never connects, so no sshd.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from mcp import Client
from mcp.shared.exceptions import MCPError

from agent.access.identity import Identity, local_user_identity
from agent.hosts.inventory import HostConfig
from agent.hosts.registry import Presence
from agent.mcp.resources import HOSTS_TEMPLATE, HOSTS_URI
from agent.settings import Settings
from tests.support.agents import RunningAgent, running_agent
from tests.support.peers import by_address, mcp_from

BOB = Identity(login="bob@example.com", node="phone.tailnet.test")
OPERATOR = local_user_identity("local-operator")  # every other test's caller
POLICY = """
default: none
rules:
  - name: bob-databases
    who: [bob@example.com]
    hosts: ["tag:db"]
    commands: [hostname]
"""
ROLES = (("web", 600, ("tag:web",)), ("app", 300, ("tag:app",)),
         ("db", 100, ("tag:db", "tag:prod")))


def tailnet_fleet() -> dict[str, tuple[HostConfig, Presence]]:
    fleet = {}
    index = 0
    for role, count, tags in ROLES:
        for n in range(1, count + 1):
            name = f"{role}-{n:04d}"
            host = HostConfig(name=name, address=f"{name}.tailnet.test", user="ops",
                              source="tailnet", tags=tags)
            fleet[name] = host, Presence(online=index % 50 != 7, os="linux")
            index += 1
    return fleet


@pytest.fixture
async def agent(tmp_path: Path) -> AsyncIterator[RunningAgent]:
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY)
    bastion = HostConfig(name="bastion", address="127.0.0.1", user="ops")
    settings = dataclasses.replace(Settings(), hosts={"bastion": bastion},
                                   default_host="bastion", policy_file=policy,
                                   audit_log=tmp_path / "audit.jsonl")
    callers = by_address({"127.0.0.1": OPERATOR, "127.0.0.2": BOB})
    async with running_agent(settings, mode="tailnet", resolver=callers) as running:
        running.service.hosts.set_tailnet(tailnet_fleet())
        yield running


async def hosts(client: Client, **arguments: Any) -> dict[str, Any]:
    result = await client.call_tool("list_hosts", arguments)
    assert not result.is_error, result.content
    assert result.structured_content is not None
    return result.structured_content


def names(page: dict[str, Any]) -> list[str]:
    return [h["name"] for h in page["hosts"]]


async def test_a_thousand_hosts_come_a_small_page_at_a_time(agent: RunningAgent) -> None:
    async with Client(agent.url) as mcp:
        result = await mcp.call_tool("list_hosts", {})
        first = result.structured_content
        assert first is not None
        text = "".join(c.text for c in result.content if c.type == "text")
        assert len(text.encode()) < 8_000  # the model's share of 1,001 hosts
        assert json.loads(text) == first
        assert len(names(first)) == 50 and names(first) == sorted(names(first))
        assert names(first)[:2] == ["app-0001", "app-0002"]
        assert first["total"] == 1001 and first["next_cursor"] == "app-0050"
        assert first["default_host"] == "bastion"
        assert first["online"] == {"online": 980, "offline": 20, "unknown": 1}
        assert first["tags"] == {"tag:web": 600, "tag:app": 300, "tag:db": 100,
                                 "tag:prod": 100}
        assert first["note"].startswith("Hosts 1-50 of 1001, by name. 951 more: call "
                                        "list_hosts with cursor='app-0050', or narrow")
        assert "run_on_hosts takes tag:<name>, globs and 'all' itself" in first["note"]

        seen, page, pages = names(first), first, 1
        while page["next_cursor"] is not None:
            page = await hosts(mcp, cursor=page["next_cursor"], limit=200)
            seen += names(page)
            pages += 1
        assert pages == 1 + 5  # 50, then 951 in pages of 200
        assert len(seen) == len(set(seen)) == 1001 and seen == sorted(seen)
        assert page["note"] == "Hosts 851-1001 of 1001, by name."


async def test_filters_by_tag_online_state_and_name(agent: RunningAgent) -> None:
    async with Client(agent.url) as mcp:
        web = await hosts(mcp, tag="web")
        assert web["total"] == 600 and set(web["tags"]) == {"tag:web"}
        assert (await hosts(mcp, tag="tag:db"))["total"] == 100
        offline = await hosts(mcp, online=False)
        assert offline["total"] == 20 and offline["online"] == {
            "online": 0, "offline": 20, "unknown": 0}
        assert all(h["online"] is False for h in offline["hosts"])
        web_down = await hosts(mcp, tag="web", online=False)
        assert web_down["total"] == 12
        assert "matching tag=tag:web, online=false" in web_down["note"]
        assert (await hosts(mcp, name="db-00*"))["total"] == 99
        assert names(await hosts(mcp, name="0042")) == ["app-0042", "db-0042", "web-0042"]
        assert names(await hosts(mcp, name="BASTION")) == ["bastion"]
        none = await hosts(mcp, tag="nope")
        assert none["total"] == 0 and none["hosts"] == []
        assert none["note"] == "No host matching tag=tag:nope."
        # The next page keeps the filters, and says so.
        db = await hosts(mcp, tag="db", limit=30)
        assert db["next_cursor"] == "db-0030"
        assert "call list_hosts with cursor='db-0030', tag='db', limit=30" in db["note"]
        rest = await hosts(mcp, tag="db", limit=30, cursor=db["next_cursor"])
        assert names(rest)[0] == "db-0031"
        for bad in ({"limit": 0}, {"limit": 201}, {"name": "x" * 201}):
            refused = await mcp.call_tool("list_hosts", bad)
            assert refused.is_error


async def test_a_cursor_neither_skips_nor_repeats_a_host_while_the_fleet_changes(
        agent: RunningAgent) -> None:
    async with Client(agent.url) as mcp:
        first = await hosts(mcp, tag="db", limit=10)
        fleet = tailnet_fleet()
        del fleet["db-0003"], fleet["db-0015"]  # one already shown left, one to come left
        extra = HostConfig(name="db-0010a", address="x.tailnet.test", user="ops",
                           source="tailnet", tags=("tag:db",))
        fleet["db-0010a"] = extra, Presence(online=True)  # joined right after the cursor
        agent.service.hosts.set_tailnet(fleet)
        second = await hosts(mcp, tag="db", limit=10, cursor=first["next_cursor"])
    assert names(first)[-1] == "db-0010"
    assert names(second) == ["db-0010a", *(f"db-{n:04d}" for n in range(11, 21) if n != 15)]


async def test_a_caller_sees_only_their_hosts_in_the_page_and_in_the_counts(
        agent: RunningAgent) -> None:
    async with mcp_from(agent.url, "127.0.0.2", mode="legacy") as bob:
        mine = await hosts(bob)
    assert mine["total"] == 100 and set(names(mine)) <= {f"db-{n:04d}" for n in range(1, 101)}
    assert mine["tags"] == {"tag:db": 100, "tag:prod": 100}
    assert mine["default_host"] is None  # bastion is not Bob's
    assert "web-0" not in json.dumps(mine) and "bastion" not in json.dumps(mine)


async def test_the_hosts_resource_pages_and_filters_the_same_way(agent: RunningAgent) -> None:
    async with Client(agent.url) as mcp:
        templates = (await mcp.list_resource_templates()).resource_templates
        assert HOSTS_TEMPLATE in {t.uri_template for t in templates}
        assert HOSTS_TEMPLATE == "tailnet-agent://hosts{?tag,online,name,cursor,limit}"

        async def read(uri: str) -> dict[str, Any]:
            (content,) = (await mcp.read_resource(uri)).contents
            data: dict[str, Any] = json.loads(content.text)  # type: ignore[union-attr]
            return data

        plain = await read(HOSTS_URI)
        listed = await hosts(mcp)
        assert plain["hosts"] == listed["hosts"] and plain["total"] == listed["total"]
        assert "read tailnet-agent://hosts?cursor=app-0050" in plain["note"]
        page = await read(f"{HOSTS_URI}?tag=db&online=true&limit=10")
        assert names(page) == [f"db-{n:04d}" for n in range(1, 12) if n != 8]  # 8: offline
        assert page["total"] == 98
        assert "read tailnet-agent://hosts?tag=db&online=true&limit=10&cursor=db-0011" in (
            page["note"])
        nxt = await read(f"{HOSTS_URI}?tag=db&online=true&limit=10&cursor=db-0011")
        assert names(nxt)[0] == "db-0012"
        assert names(await read(f"{HOSTS_URI}?name=web-05*&limit=200"))[-1] == "web-0599"
        for bad, why in ((f"{HOSTS_URI}?colour=red", "not colour"),
                         (f"{HOSTS_URI}?online=maybe", "online must be true or false"),
                         (f"{HOSTS_URI}?limit=500", "limit must be between 1 and 200"),
                         (f"{HOSTS_URI}?tag=a&tag=b", "tag is given 2 times")):
            with pytest.raises(MCPError, match=why):
                await read(bad)
