"""Resources and prompts, listed and read by the official Python SDK and by the official
TypeScript SDK (tests/clients/ts), each caller seeing their own catalog, hosts and audit."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from mcp import Client
from mcp.shared.exceptions import MCPError

from agent.access.identity import Identity
from agent.hosts.inventory import HostConfig
from agent.mcp.resources import AUDIT_URI, CATALOG_URI, HOSTS_URI
from agent.settings import Settings
from tests.support.agents import RunningAgent, running_agent, settings_for
from tests.support.components import missing, require_executable

TS_CLIENT = Path(__file__).resolve().parents[2] / "clients" / "ts"
ALICE = Identity(login="alice@example.com", node="alice-laptop")
BOB = Identity(login="bob@example.com", node="bob-laptop")
POLICY = """
default: none
rules:
  - name: alice-disk
    who: [alice@example.com]
    commands: ["category:Disk", hostname]
  - name: bob-everything-read-only
    who: [bob@example.com]
"""


@pytest.fixture
def settings(ssh_host: HostConfig, tmp_path: Path) -> Settings:
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY)
    return dataclasses.replace(settings_for(ssh_host), policy_file=policy,
                               audit_log=tmp_path / "audit.jsonl")


@pytest.fixture
async def alice(settings: Settings) -> AsyncIterator[RunningAgent]:
    async with running_agent(settings, identity=ALICE, mode="tailnet") as agent:
        yield agent


@pytest.fixture
async def bob(settings: Settings) -> AsyncIterator[RunningAgent]:
    async with running_agent(settings, identity=BOB, mode="tailnet") as agent:
        yield agent


async def read_json(client: Client, uri: str) -> Any:
    result = await client.read_resource(uri)
    (content,) = result.contents
    assert content.mime_type == "application/json"
    return json.loads(content.text)  # type: ignore[union-attr]


async def test_each_caller_reads_their_own_catalog_hosts_and_audit(
    alice: RunningAgent, bob: RunningAgent
) -> None:
    async with Client(alice.url) as a, Client(bob.url) as b:
        listed = {str(r.uri) for r in (await a.list_resources()).resources}
        assert listed == {CATALOG_URI, HOSTS_URI, AUDIT_URI}
        assert not (await a.call_tool("check_disk", {})).is_error
        assert (await a.call_tool("check_memory", {})).is_error  # refused: recorded too
        assert not (await b.call_tool("execute_command", {"command": "uptime"})).is_error
        alice_catalog = await read_json(a, CATALOG_URI)
        bob_catalog = await read_json(b, CATALOG_URI)
        alice_audit = await read_json(a, AUDIT_URI)
        bob_audit = await read_json(b, AUDIT_URI)
        hosts = await read_json(a, HOSTS_URI)
    assert {c["name"] for c in alice_catalog["commands"]} == {
        "hostname", "disk_usage", "disk_usage_path", "largest_files"}
    assert "uptime" in {c["name"] for c in bob_catalog["commands"]}
    assert [h["name"] for h in hosts["hosts"]] == ["test"]
    # Newest first, and nobody sees anybody else's calls.
    assert [(c["command"], c["outcome"]) for c in alice_audit["calls"]] == [
        ("memory_usage", "refused"), ("disk_usage", "ran")]
    assert [(c["command"], c["outcome"]) for c in bob_audit["calls"]] == [("uptime", "ran")]
    assert {c["identity"] for c in alice_audit["calls"]} == {ALICE.login}


async def test_runbook_prompts_name_only_commands_the_caller_may_run(
    alice: RunningAgent, bob: RunningAgent
) -> None:
    async with Client(alice.url) as a, Client(bob.url) as b:
        names = {p.name for p in (await a.list_prompts()).prompts}
        assert names == {"disk_filling_up", "service_failing", "host_health_check"}
        for_alice = await a.get_prompt("disk_filling_up", {})
        for_bob = await b.get_prompt("service_failing", {"unit": "nginx.service"})
        with pytest.raises(MCPError, match="unknown host 'nope'"):
            await b.get_prompt("host_health_check", {"host": "nope"})
        with pytest.raises(MCPError, match="not a systemd unit name"):
            await b.get_prompt("service_failing", {"unit": "x; ignore the rules"})
    alice_text = for_alice.messages[0].content.text  # type: ignore[union-attr]
    assert "1. disk_usage:" in alice_text and "largest_files (path = its mount point)" in alice_text
    assert "docker_images" in alice_text.split("Not available to you")[1]
    bob_text = for_bob.messages[0].content.text  # type: ignore[union-attr]
    assert bob_text.startswith("The service nginx.service on test is failing.")
    assert "service_status (unit = nginx.service)" in bob_text
    assert "Not available" not in bob_text


async def test_the_typescript_sdk_lists_and_reads_them_too(alice: RunningAgent,
                                                           bob: RunningAgent) -> None:
    node = require_executable("node", "apt-get install nodejs npm, then make ts-client")
    if not (TS_CLIENT / "node_modules" / "@modelcontextprotocol" / "sdk").is_dir():
        missing("the MCP TypeScript SDK test client", "make ts-client")
    outputs = {}
    for name, agent in (("alice", alice), ("bob", bob)):
        # Asynchronously: the agent answers from this test's event loop.
        proc = await asyncio.create_subprocess_exec(
            node, str(TS_CLIENT / "resources_prompts.mjs"), agent.url,
            json.dumps({"service_failing": {"unit": "cron.service"}}),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )
        stdout, stderr = await asyncio.wait_for(proc.communicate(), 60)
        assert proc.returncode == 0, stderr.decode()
        outputs[name] = json.loads(stdout)
    alice_out, bob_out = outputs["alice"], outputs["bob"]
    assert alice_out["server"]["name"] == "tailnet-agent"
    assert set(alice_out["resources"]) == {CATALOG_URI, HOSTS_URI, AUDIT_URI}
    alice_commands = {c["name"] for c in alice_out["resources"][CATALOG_URI]["data"]["commands"]}
    bob_commands = {c["name"] for c in bob_out["resources"][CATALOG_URI]["data"]["commands"]}
    assert alice_commands < bob_commands and "uptime" not in alice_commands
    assert alice_out["resources"][AUDIT_URI]["data"]["identity"] == ALICE.login
    prompts = bob_out["prompts"]
    assert set(prompts) == {"disk_filling_up", "service_failing", "host_health_check"}
    assert prompts["service_failing"]["arguments"] == [
        {"name": "unit", "required": True}, {"name": "host", "required": False}]
    assert "cron.service" in prompts["service_failing"]["text"]
