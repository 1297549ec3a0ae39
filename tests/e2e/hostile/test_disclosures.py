"""Issue 20, finding 6: the small disclosures, each from a hostile peer's seat, against the
real sshd and the real HTTP server.

Bob may run `hostname` and `uptime` on `web`; a stray tagged node may run nothing; two CI
nodes share one tag. The operator's policy file lives at a path worth hiding.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from agent.access.identity import Identity, local_user_identity
from agent.hosts.inventory import HostConfig
from agent.mcp.resources import AUDIT_URI
from agent.settings import Settings
from tests.support.agents import RunningAgent, running_agent
from tests.support.peers import by_address, http_from, mcp_from

OPERATOR = local_user_identity("local-operator")
BOB = Identity(login="bob@example.com", node="phone.tailnet.test")
STRAY = Identity(login=None, node="stray.tailnet.test", tags=("tag:stray",))
CI_1 = Identity(login=None, node="ci-1.tailnet.test", tags=("tag:ci",))
CI_2 = Identity(login=None, node="ci-2.tailnet.test", tags=("tag:ci",))
PEERS = {"127.0.0.1": OPERATOR, "127.0.0.2": BOB, "127.0.0.3": STRAY, "127.0.0.4": CI_1,
         "127.0.0.5": CI_2}
ADDRESS = {identity: address for address, identity in PEERS.items()}
POLICY = """
default: none
rules:
  - name: bob-web-basics
    who: [bob@example.com]
    hosts: [web]
    commands: [hostname, uptime]
  - name: ci-lines
    who: [tag:ci]
    hosts: [web]
    commands: [many_lines]
"""
CATALOG = """
commands:
  many_lines:
    description: Print 3000 numbered lines (more than a result shows).
    category: Test
    template: "seq 1 3000"
"""
SAME_ORIGIN = {"Sec-Fetch-Site": "same-origin"}


@dataclass
class Fleet:
    agent: RunningAgent
    hidden: tuple[str, ...]  # what no caller but the operator may read: the policy's path

    def mcp(self, who: Identity) -> Any:
        return mcp_from(self.agent.url, ADDRESS[who], mode="legacy")

    def http(self, who: Identity) -> Any:
        return http_from(ADDRESS[who], base_url=self.agent.base, timeout=30)


@pytest.fixture
async def fleet(ssh_host: HostConfig, tmp_path: Path) -> AsyncIterator[Fleet]:
    policy = tmp_path / "secret-policy-location.yaml"
    policy.write_text(POLICY)
    (tmp_path / "extra.yaml").write_text(CATALOG)
    settings = dataclasses.replace(
        Settings(), hosts={"web": dataclasses.replace(ssh_host, name="web"),
                           "db": dataclasses.replace(ssh_host, name="db")},
        default_host="db", policy_file=policy, audit_log=tmp_path / "audit.jsonl",
        rate_burst=1000, output_head=200, output_tail=100)
    async with running_agent(settings, resolver=by_address(PEERS), mode="tailnet",
                             catalogs=(tmp_path / "extra.yaml",)) as agent:
        yield Fleet(agent, ("secret-policy-location", str(tmp_path)))


def text_of(result: Any) -> str:
    content = getattr(result, "content", [])
    return " ".join(getattr(c, "text", "") for c in content) + json.dumps(
        getattr(result, "structured_content", None))


async def audit_view(client: Any) -> dict[str, Any]:
    (content,) = (await client.read_resource(AUDIT_URI)).contents
    data: dict[str, Any] = json.loads(content.text)
    return data


async def test_the_policy_files_path_is_in_no_refusal_a_caller_can_read(fleet: Fleet) -> None:
    async with fleet.http(BOB) as http:
        metrics = await http.get("/metrics")
    assert metrics.status_code == 403 and "may not read this agent's metrics" in metrics.text
    async with fleet.mcp(BOB) as bob:
        refused = await bob.call_tool("execute_command", {"command": "disk_usage",
                                                          "host": "web"})
        assert refused.is_error and "refused by policy" in text_of(refused)
        mine = json.dumps(await audit_view(bob))
    assert "disk_usage" in mine and '"refused"' in mine  # the refusal is in Bob's view
    for text in (metrics.text, text_of(refused), mine):
        assert not [h for h in fleet.hidden if h in text], text
    # The operator is still told where the policy lives.
    async with fleet.mcp(OPERATOR) as operator:
        status = (await operator.call_tool("server_status", {})).structured_content
    assert status is not None and "secret-policy-location" in status["policy"]


async def test_a_caller_with_no_grant_cannot_tell_real_hosts_from_made_up_ones(
    fleet: Fleet
) -> None:
    async with fleet.mcp(STRAY) as stray:
        answers = {}
        for host in ("web", "db", "nope", "db-9", "web "):
            result = await stray.call_tool("execute_command", {"command": "hostname",
                                                               "host": host})
            assert result.is_error
            answers[host] = text_of(result).replace(repr(host), "'X'")
        listed = await stray.call_tool("list_commands", {"host": "web"})
        made_up = await stray.call_tool("list_commands", {"host": "nope"})
    assert len(set(answers.values())) == 1, answers
    assert text_of(listed).replace("'web'", "'X'") == text_of(made_up).replace("'nope'", "'X'")


async def test_the_palette_asks_the_policy_before_it_checks_the_arguments(
    fleet: Fleet
) -> None:
    # disk_usage_path takes an absolute path under its roots; Bob may not run it at all.
    async with fleet.http(BOB) as http:
        answer = await http.post("/chat/run", data={"command": "disk_usage_path",
                                                     "host": "web", "p.path": "relative"},
                                 headers=SAME_ORIGIN)
    assert answer.status_code == 200
    assert "refused by policy" in answer.text, answer.text
    assert "absolute" not in answer.text and "roots" not in answer.text


async def test_two_nodes_sharing_a_tag_set_share_no_output_and_no_audit_view(
    fleet: Fleet
) -> None:
    async with fleet.mcp(CI_1) as first:
        ran = await first.call_tool("execute_command", {"command": "many_lines",
                                                        "host": "web"})
        assert not ran.is_error, text_of(ran)
        handle = ran.structured_content["output_handle"]  # type: ignore[index]
        assert handle and not (await first.call_tool("read_output",
                                                     {"handle": handle})).is_error
        # The run and its page read (reads are audited too), both the first node's.
        assert [c["command"] for c in (await audit_view(first))["calls"]] == [
            "many_lines", "many_lines"]
    async with fleet.mcp(CI_2) as second:
        other = await second.call_tool("read_output", {"handle": handle})
        assert other.is_error and "no output" in text_of(other)
        # Only its own refused read is in its view: nothing of the first node's calls.
        theirs = (await audit_view(second))["calls"]
        assert [(c["command"], c["outcome"]) for c in theirs] == [(None, "refused")], theirs
