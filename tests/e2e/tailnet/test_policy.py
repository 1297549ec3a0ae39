"""Policy, audit and hostile input over the real test tailnet, as remote MCP clients see it.

Topology: a headscale of its own whose tailnet policy gives alice our app capability
(a Tailscale grant, `app: {"tailnet-agent.dev/cap/run": [...]}`); the agent is
`tailnet-agent serve --policy ... --audit-log ...` as a subprocess with its own
userspace tailscaled; alice, bob (no grant) and a tagged CI node are client nodes;
"server" is a tailscaled node in front of the real OpenSSH sshd.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import tempfile
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx2
import mcp_types
import pytest
import pytest_asyncio
import yaml
from mcp import Client
from mcp.client.session import ClientRequestContext
from mcp.client.streamable_http import streamable_http_client

from agent.access.grants import CAPABILITY
from agent.access.policy import DEFAULT_RULE, TAGGED_RULE
from tailscale_userspace import TailscaleNode
from tests.support.agent_process import AgentProcess, ready_url, server_env, spawn_agent
from tests.support.headscale_policy import allow_all_with_grants, policy_tailnet_fixture
from tests.support.payloads import payloads
from tests.support.sshd import Sshd
from tests.support.tailnet import TestTailnet, free_port
from whitelist import default_catalog_path, load_catalog
from whitelist.values import check_value

AGENT_HOSTNAME = "agent-policy"
ALICE_GRANT = {"hosts": ["*"], "commands": ["make_marker"], "destructive": True}
policy_tailnet = policy_tailnet_fixture({
    **allow_all_with_grants({"src": ["alice@"], "dst": ["agent@"],
                             "app": {CAPABILITY: [ALICE_GRANT]}}),
    "tagOwners": {"tag:ci": ["ops@"]},
})
AGENT_POLICY = """
rules:
  - name: alice-disk
    who: [alice]
    commands: ["category:Disk"]
"""
# The parameters the injection suite goes through, of three different types.
INJECTION_TARGETS = (("disk_usage_path", "path"), ("service_status", "unit"),
                     ("top_processes", "count"))


@dataclass
class Topology:
    tailnet: TestTailnet
    sshd: Sshd
    alice: TailscaleNode
    bob: TailscaleNode
    ci: TailscaleNode
    agent: AgentProcess
    url: str
    audit: Path
    marker: Path
    canary: Path
    expected_calls: Counter[str] = field(default_factory=Counter)


def extra_catalog(path: Path, marker: Path) -> None:
    """A destructive command, and twins that print what the remote shell handed over."""
    raw = yaml.safe_load(default_catalog_path().read_text())["commands"]
    commands: dict[str, Any] = {
        "make_marker": {"description": "Create the marker file.", "category": "Changes",
                        "template": f"touch -- {marker}", "destructive": True},
    }
    for name, parameter in INJECTION_TARGETS:
        commands[f"{name}_argv"] = {
            "description": f"Print the argument {name} would get.", "category": "Test",
            "template": "printf '<%s>\\n' {" + parameter + "}",
            "parameters": {parameter: raw[name]["parameters"][parameter]},
        }
    path.write_text(yaml.safe_dump({"commands": commands}))


@pytest.fixture(scope="module")
def scratch() -> Iterator[Path]:
    # Writable by the sshd test user: a payload or command that ran would leave a file.
    directory = Path(tempfile.mkdtemp(prefix="tnagent-e2e-policy-"))
    directory.chmod(0o777)
    yield directory
    for leftover in directory.iterdir():
        leftover.unlink()
    directory.rmdir()


def prepare(work: Path, scratch: Path) -> None:
    """The agent's files: policy and catalog."""
    (work / "policy.yaml").write_text(AGENT_POLICY)
    extra_catalog(work / "extra.yaml", scratch / "marker")


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def topology(policy_tailnet: TestTailnet, sshd: Sshd, scratch: Path,
                   tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Topology]:
    net = policy_tailnet
    server = await net.node("server", user="ops")
    alice = await net.node("alice-laptop", user="alice")
    bob = await net.node("bob-laptop", user="bob")
    ci = await net.node("ci-runner", user="ops", tags=("tag:ci",))
    server_ip = server.info.ips[0] if server.info else ""
    work = tmp_path_factory.mktemp("agent-policy")
    prepare(work, scratch)
    env = {
        **net.env(user="agent", hostname=AGENT_HOSTNAME),
        **server_env(sshd, server_ip, work),
        # The injection suite is hundreds of calls from one identity.
        "TAILNET_AGENT_RATE_PER_MINUTE": "100000",
        "TAILNET_AGENT_RATE_BURST": "100000",
    }
    agent = spawn_agent(env, "--port", str(free_port()), "--policy", str(work / "policy.yaml"),
                        "--audit-log", str(work / "audit.jsonl"),
                        "--catalog", str(work / "extra.yaml"))
    try:
        url = await ready_url(agent, (alice, bob, ci))
        yield Topology(net, sshd, alice, bob, ci, agent, url, work / "audit.jsonl",
                       scratch / "marker", scratch / "canary")
    finally:
        agent.stop()


class Confirmer:
    """An elicitation callback that answers yes (or no) and remembers being asked."""

    def __init__(self, answer: bool) -> None:
        self.answer = answer
        self.asked: list[str] = []

    async def __call__(self, context: ClientRequestContext,
                      params: mcp_types.ElicitRequestParams) -> mcp_types.ElicitResult:
        self.asked.append(params.message)
        if not self.answer:
            return mcp_types.ElicitResult(action="decline")
        return mcp_types.ElicitResult(action="accept", content={"confirm": True})


def client(node: TailscaleNode, url: str, *, headers: dict[str, str] | None = None,
           confirmer: Confirmer | None = None) -> Client:
    host, port = node.socks5
    http = httpx2.AsyncClient(proxy=f"socks5://{host}:{port}", timeout=httpx2.Timeout(60.0),
                              headers=headers)
    # Elicitation needs the stateful (legacy) session: the SDK's modern mode over HTTP has
    # no back-channel for server-initiated requests.
    return Client(streamable_http_client(url, http_client=http), elicitation_callback=confirmer,
                  mode="legacy" if confirmer is not None else "auto")


async def run(t: Topology, mcp: Client, tool: str, arguments: dict[str, Any]) -> Any:
    """A tool call that reaches AgentService.run once per command: counted for the audit test."""
    result = await mcp.call_tool(tool, arguments)
    t.expected_calls[tool] += 6 if tool == "system_overview" else 1
    return result


def text(result: Any) -> str:
    return "".join(getattr(c, "text", "") for c in result.content)


def audit_cli(t: Topology, *args: str) -> str:
    """`tailnet-agent audit` as the operator runs it."""
    return subprocess.run(
        [sys.executable, "-m", "agent.cli", "audit", "--env-file", "/dev/null",
         "--audit-log", str(t.audit), *args],
        capture_output=True, text=True, timeout=60, check=True,
    ).stdout


def audit(t: Topology, *args: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in audit_cli(t, "--json", *args).split("\n") if line]


async def test_a_user_without_a_grant_sees_the_default_and_their_refusal_is_audited(
    topology: Topology,
) -> None:
    t = topology
    catalog = load_catalog([t.audit.parent / "extra.yaml"])
    read_only = {c.name for c in catalog if not c.destructive}
    confirmer = Confirmer(answer=True)
    async with client(t.bob, t.url, confirmer=confirmer) as mcp:
        listed = await mcp.call_tool("list_commands", {})
        assert {c["name"] for c in listed.structured_content["commands"]} == read_only
        assert not (await run(t, mcp, "check_disk", {})).is_error
        refused = await run(t, mcp, "execute_command", {"command": "make_marker"})
    assert refused.is_error
    message = text(refused)
    assert "refused by policy" in message and f"[rule: {DEFAULT_RULE}]" in message, message
    assert confirmer.asked == [] and not t.marker.exists()
    bob = t.tailnet.login_name("bob")
    records = audit(t, "--identity", bob, "--command", "make_marker", "--since", "10m")
    assert len(records) == 1, records
    (record,) = records
    assert record["outcome"] == "refused" and record["decision"]["rule"] == DEFAULT_RULE
    assert record["node"].startswith("bob-laptop") and record["host"] == "server"
    shown = audit_cli(t, "--identity", bob)
    assert "make_marker on server: refused" in shown


async def test_a_tailscale_grant_lets_alice_run_a_destructive_command_once_confirmed(
    topology: Topology,
) -> None:
    t = topology
    declined = Confirmer(answer=False)
    async with client(t.alice, t.url, confirmer=declined) as mcp:
        listed = await mcp.call_tool("list_commands", {})
        assert "make_marker" in {c["name"] for c in listed.structured_content["commands"]}
        result = await run(t, mcp, "execute_command", {"command": "make_marker"})
    assert result.is_error and declined.asked and not t.marker.exists()
    confirmer = Confirmer(answer=True)
    async with client(t.alice, t.url, confirmer=confirmer) as mcp:
        result = await run(t, mcp, "execute_command", {"command": "make_marker"})
        assert not result.is_error, text(result)
        # Her YAML rule (Disk) and the shipped default (read-only) apply as well.
        assert not (await run(t, mcp, "check_path_size", {"path": "/etc"})).is_error
    assert len(confirmer.asked) == 1 and t.marker.exists()
    records = audit(t, "--identity", t.tailnet.login_name("alice"), "--command", "make_marker")
    assert [r["outcome"] for r in records] == ["not-confirmed", "ran"]
    assert records[1]["decision"]["rule"] == f"tailnet grant {CAPABILITY} #1"
    (disk,) = audit(t, "--identity", t.tailnet.login_name("alice"), "--command",
                    "disk_usage_path")
    assert disk["decision"]["rule"] == "alice-disk"


async def test_a_tagged_node_gets_nothing_by_default(topology: Topology) -> None:
    t = topology
    async with client(t.ci, t.url) as mcp:
        listed = await mcp.call_tool("list_commands", {})
        assert listed.structured_content["commands"] == []
        # Not even where the hosts are, or who logs in to them.
        assert (await mcp.call_tool("list_hosts", {})).structured_content["hosts"] == []
        status = await mcp.call_tool("server_status", {})
        assert status.structured_content["hosts"] == {}
        refused = await run(t, mcp, "check_disk", {})
        overview = await run(t, mcp, "system_overview", {})
    assert refused.is_error and f"[rule: {TAGGED_RULE}]" in text(refused)
    assert overview.is_error
    assert {r["outcome"] for r in audit(t, "--identity", "tag:ci")} == {"refused"}


async def test_forged_identity_headers_through_the_tailnet_are_ignored(
    topology: Topology,
) -> None:
    t = topology
    forged = {"Tailscale-User-Login": t.tailnet.login_name("alice"),
              "Tailscale-User-Name": "alice"}
    async with client(t.bob, t.url, headers=forged, confirmer=Confirmer(True)) as mcp:
        pong = await mcp.call_tool("ping", {})
        refused = await run(t, mcp, "execute_command", {"command": "make_marker"})
    assert pong.structured_content["identity"].startswith(t.tailnet.login_name("bob"))
    assert refused.is_error and "refused by policy" in text(refused)


async def test_the_injection_suite_through_the_tailnet(topology: Topology) -> None:
    t = topology
    values = payloads(str(t.canary))
    commands = load_catalog()
    gate = asyncio.Semaphore(8)
    rejected = accepted = 0

    async def attempt(mcp: Client, name: str, parameter: str, value: str) -> bool:
        arguments = {"command": name, "parameters": {parameter: value}}
        async with gate:
            result = await run(t, mcp, "execute_command", arguments)
        if result.is_error:
            assert parameter in text(result), (name, value, text(result))
            return False
        async with gate:
            echoed = await run(t, mcp, "execute_command",
                               {**arguments, "command": f"{name}_argv"})
        spec = next(p for p in commands.get(name).parameters if p.name == parameter)
        assert not echoed.is_error, (name, value, text(echoed))
        expected = f"<{check_value(name, spec, value)}>\n"
        assert echoed.structured_content["stdout"] == expected, (name, value)
        return True

    async with client(t.alice, t.url) as mcp:
        for name, parameter in INJECTION_TARGETS:
            outcomes = await asyncio.gather(
                *(attempt(mcp, name, parameter, value) for value in values))
            accepted += sum(outcomes)
            rejected += len(outcomes) - sum(outcomes)
            assert not t.canary.exists(), f"a payload through {name}.{parameter} ran"
    assert rejected + accepted == len(values) * len(INJECTION_TARGETS)
    assert rejected > accepted > 0


async def test_every_call_appears_in_the_audit_log_exactly_once(topology: Topology) -> None:
    t = topology
    records = [json.loads(line) for line in t.audit.read_text().split("\n") if line]
    events = Counter((r["call"], r["event"]) for r in records)
    calls = {call for call, _ in events}
    assert all(events[(c, "start")] == 1 and events[(c, "end")] == 1 for c in calls)
    assert len(calls) == sum(t.expected_calls.values()), t.expected_calls
