"""A call's recording is its audit record's to give: only the caller, the person who approved
it and an auditor may replay it or fetch its cast. Every other peer, a person or a tagged
node, gets the same "not found" as for a call that never was, over the real HTTP server,
for hundreds of guesses and for the real id alike."""

from __future__ import annotations

import dataclasses
import secrets
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from agent.access.identity import Identity
from agent.hosts.inventory import HostConfig
from agent.settings import Settings
from tests.support.agents import RunningAgent, running_agent
from tests.support.peers import by_address, http_from, mcp_from

ALICE = Identity(login="alice@example.com", node="laptop.tailnet.test")
ALICE_PHONE = Identity(login="alice@example.com", node="phone.tailnet.test")
MALLORY = Identity(login="mallory@example.com", node="mallory-pc.tailnet.test")
TAGGED = Identity(login=None, node="ci.tailnet.test", tags=("tag:ci",))
AUDITOR = Identity(login="auditor@example.com", node="desk.tailnet.test")
PEERS = {"127.0.0.2": ALICE, "127.0.0.3": ALICE_PHONE, "127.0.0.4": MALLORY,
         "127.0.0.5": TAGGED, "127.0.0.6": AUDITOR}
ADDRESS = {identity: address for address, identity in PEERS.items()}
POLICY = """
rules:
  - name: auditors
    who: [auditor@example.com]
    commands: []
    audit: true
  - name: ci
    who: [tag:ci]
    commands: [hostname]
"""


@pytest.fixture
async def agent(ssh_host: HostConfig, tmp_path: Path) -> AsyncIterator[RunningAgent]:
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY)
    settings = dataclasses.replace(
        Settings(), hosts={ssh_host.name: ssh_host}, default_host=ssh_host.name,
        policy_file=policy, audit_log=tmp_path / "audit.jsonl", rate_burst=1000)
    async with running_agent(settings, resolver=by_address(PEERS), mode="tailnet") as running:
        yield running


async def run_hostname(agent: RunningAgent, who: Identity) -> str:
    async with mcp_from(agent.url, ADDRESS[who], mode="legacy") as client:
        result = await client.call_tool("execute_command", {"command": "hostname"})
    assert not result.is_error
    call: str = result.structured_content["audit_id"]
    return call


async def fetch(agent: RunningAgent, who: Identity, path: str) -> Any:
    async with http_from(ADDRESS[who], base_url=agent.base, timeout=30) as http:
        return await http.get(path)


async def test_only_the_caller_and_an_auditor_get_a_recording(agent: RunningAgent) -> None:
    call = await run_hostname(agent, ALICE)
    cast = (await fetch(agent, ALICE, f"/audit/{call}/cast"))
    assert cast.status_code == 200 and cast.text.startswith('{"version": 2,')
    # The same person on another device, and an auditor, see it too.
    for who in (ALICE_PHONE, AUDITOR):
        assert (await fetch(agent, who, f"/audit/{call}/cast")).content == cast.content
        assert (await fetch(agent, who, f"/audit/{call}/replay")).status_code == 200
    unknown = "0123456789abcdef"
    for who in (MALLORY, TAGGED):
        for path in (f"/audit/{call}/cast", f"/audit/{call}/replay"):
            refused = await fetch(agent, who, path)
            assert refused.status_code == 404, (who, path)
            assert call in refused.text and cast.text[:200] not in refused.text
            # Word for word what a call that never was gets: nothing tells them it exists.
            never = await fetch(agent, who, path.replace(call, unknown))
            assert refused.text.replace(call, unknown) == never.text
    # A tagged node's own call is its own (by tags and node), not every ci node's.
    ci_call = await run_hostname(agent, TAGGED)
    assert (await fetch(agent, TAGGED, f"/audit/{ci_call}/cast")).status_code == 200
    assert (await fetch(agent, MALLORY, f"/audit/{ci_call}/cast")).status_code == 404
    assert (await fetch(agent, ALICE, f"/audit/{ci_call}/cast")).status_code == 404


async def test_guessing_ids_finds_nothing(agent: RunningAgent) -> None:
    await run_hostname(agent, ALICE)
    statuses: dict[int, int] = {}
    async with http_from(ADDRESS[MALLORY], base_url=agent.base, timeout=30) as http:
        for _ in range(400):
            response = await http.get(f"/audit/{secrets.token_hex(8)}/cast")
            statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
        for path in ("/audit/..%2F..%2Fetc%2Fpasswd/cast", "/audit/%2e%2e/cast",
                     "/audit/ABCDEF0123456789/cast", f"/audit/{'a' * 500}/cast"):
            assert (await http.get(path)).status_code in (404, 429)
    assert statuses == {404: 400}
