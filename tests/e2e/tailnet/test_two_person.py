"""The two-person rule end to end on the real test tailnet, with distinct tailnet identities.

Alice asks over MCP (from her node) to run a destructive command whose rule requires a
second person from group:ops. The call waits; Bob (group:ops, on his node) sees it on the
chat page's approvals view, with Alice's identity, the host and the exact command line,
and approves or denies it; Alice gets the outcome as her tool result. Alice, although in
group:ops, cannot approve her own request; Carol (not in group:ops) cannot either. The
audit record of the call holds both identities.
"""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx2
import pytest
import pytest_asyncio
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from tailscale_userspace import TailscaleNode
from tests.support.agent_process import AgentProcess, ready_url, server_env, spawn_agent
from tests.support.sshd import Sshd
from tests.support.tailnet import TestTailnet, free_port
from tests.support.waiting import wait_until

POLICY = """
groups:
  group:ops: [alice, bob]
rules:
  - name: alice-changes
    who: [alice]
    commands: [make_marker]
    destructive: true
    approvers: [group:ops]
    approval_minutes: 30
"""


@dataclass
class Topology:
    tailnet: TestTailnet
    alice: TailscaleNode
    bob: TailscaleNode
    carol: TailscaleNode
    agent: AgentProcess
    url: str
    audit: Path
    marker: Path

    @property
    def base(self) -> str:
        return self.url.removesuffix("/mcp")


@pytest.fixture(scope="module")
def scratch() -> Iterator[Path]:
    directory = Path(tempfile.mkdtemp(prefix="tnagent-two-person-"))
    directory.chmod(0o777)
    yield directory
    shutil.rmtree(directory, ignore_errors=True)


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def topology(tailnet: TestTailnet, sshd: Sshd, scratch: Path,
                   tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Topology]:
    server = await tailnet.node("tp-server", user="ops")
    alice = await tailnet.node("tp-alice", user="alice")
    bob = await tailnet.node("tp-bob", user="bob")
    carol = await tailnet.node("tp-carol", user="carol")
    server_ip = server.info.ips[0] if server.info else ""
    work = tmp_path_factory.mktemp("two-person")
    (work / "policy.yaml").write_text(POLICY)
    marker = scratch / "marker"
    (work / "extra.yaml").write_text(
        "commands:\n  make_marker:\n    description: Create the marker file.\n"
        f"    category: Changes\n    template: \"touch -- {marker}\"\n    destructive: true\n")
    env = {**tailnet.env(user="agent", hostname="agent-two-person"),
           **server_env(sshd, server_ip, work), "TAILNET_AGENT_APPROVAL_TIMEOUT": "60"}
    agent = spawn_agent(env, "--port", str(free_port()), "--policy", str(work / "policy.yaml"),
                        "--audit-log", str(work / "audit.jsonl"),
                        "--catalog", str(work / "extra.yaml"))
    try:
        url = await ready_url(agent, (alice, bob, carol))
        yield Topology(tailnet, alice, bob, carol, agent, url, work / "audit.jsonl", marker)
    finally:
        agent.stop()


def http(node: TailscaleNode) -> httpx2.AsyncClient:
    host, port = node.socks5
    return httpx2.AsyncClient(proxy=f"socks5://{host}:{port}", timeout=httpx2.Timeout(60.0))


def mcp_client(node: TailscaleNode, url: str) -> Client:
    return Client(streamable_http_client(url, http_client=http(node)))


async def pending_ids(page: httpx2.AsyncClient, base: str, *, within: float = 30) -> list[str]:
    """Request ids this person may decide, once at least one shows (the page polls too)."""
    async def listed() -> list[str]:
        listing = await page.get(f"{base}/approvals/list")
        assert listing.status_code == 200
        return re.findall(r'id="approval-([0-9a-f]+)"', listing.text)

    return await wait_until(listed, within, "a request on the approvals page", every=0.2)


async def decide(page: httpx2.AsyncClient, base: str, request: str, decision: str,
                 **extra: str) -> httpx2.Response:
    # What the page's form sends; a browser adds Sec-Fetch-Site itself.
    return await page.post(f"{base}/approvals/{request}", data={"decision": decision, **extra},
                           headers={"Sec-Fetch-Site": "same-origin"})


def audit(t: Topology) -> list[dict[str, Any]]:
    return [json.loads(line) for line in t.audit.read_text().splitlines() if line]


async def test_bob_approves_alices_request_and_both_are_recorded(topology: Topology) -> None:
    t = topology
    async with mcp_client(t.alice, t.url) as alice, http(t.bob) as bob, \
            http(t.alice) as alice_page, http(t.carol) as carol_page:
        call = asyncio.create_task(alice.call_tool("execute_command",
                                                   {"command": "make_marker"}))
        (request,) = await pending_ids(bob, t.base)
        page = (await bob.get(f"{t.base}/approvals")).text
        assert "alice" in page and "tp-alice" in page and "make_marker" in page
        assert f"touch -- {t.marker}" in page and "server" in page
        # Alice sees it as her own request, with nothing to decide; she may not approve it.
        own = (await alice_page.get(f"{t.base}/approvals/list")).text
        assert "approval-" not in own and "waiting for group:ops" in own
        refused = await decide(alice_page, t.base, request, "approve")
        assert refused.status_code == 403 and "you asked for this command" in refused.text
        carol = await decide(carol_page, t.base, request, "approve")
        assert carol.status_code == 403 and "only group:ops may decide" in carol.text
        assert not call.done() and not t.marker.exists()
        approved = await decide(bob, t.base, request, "approve")
        assert approved.status_code == 200
        result = await asyncio.wait_for(call, 30)
    assert not result.is_error, result.content
    assert t.marker.exists()
    starts = [r for r in audit(t) if r["event"] == "start" and r["command"] == "make_marker"]
    record = starts[-1]
    assert record["identity"] == "alice" and record["node"].startswith("tp-alice")
    assert record["approved_by"]["identity"] == "bob"
    assert record["approved_by"]["decision"] == "approved"
    assert record["approved_by"]["node"].startswith("tp-bob")
    assert record["approval_request"]["approvers"] == ["group:ops"]


async def test_a_denial_reaches_alice_as_her_tool_result(topology: Topology) -> None:
    t = topology
    t.marker.unlink(missing_ok=True)
    async with mcp_client(t.alice, t.url) as alice, http(t.bob) as bob:
        call = asyncio.create_task(alice.call_tool("execute_command",
                                                   {"command": "make_marker"}))
        (request,) = await pending_ids(bob, t.base)
        assert (await decide(bob, t.base, request, "deny")).status_code == 200
        result = await asyncio.wait_for(call, 30)
    assert result.is_error and "bob denied 'make_marker'" in result.content[0].text
    assert not t.marker.exists()
    ends = [r for r in audit(t) if r["event"] == "end"]
    assert ends[-1]["outcome"] == "not-confirmed"


async def test_bob_can_approve_identical_calls_for_a_while(topology: Topology) -> None:
    t = topology
    async with mcp_client(t.alice, t.url) as alice, http(t.bob) as bob:
        call = asyncio.create_task(alice.call_tool("execute_command",
                                                   {"command": "make_marker"}))
        (request,) = await pending_ids(bob, t.base)
        await decide(bob, t.base, request, "approve", minutes="15")
        assert not (await asyncio.wait_for(call, 30)).is_error
        # Within the window the same call runs at once, nobody asked, the approval cited.
        again = await asyncio.wait_for(
            alice.call_tool("execute_command", {"command": "make_marker"}), 20)
        assert not again.is_error
    starts = [r for r in audit(t) if r["event"] == "start" and r["command"] == "make_marker"]
    granted, cited = starts[-2]["approval_granted"], starts[-1]["approval"]
    assert granted["minutes"] == 15 and cited["id"] == granted["id"]
    assert cited["approved_by"] == "bob"
