"""The seed's topology on one machine, over a real Headscale tailnet.

- "server": a tailscaled node in front of the real OpenSSH sshd;
- "agent": `tailnet-agent serve` as a subprocess with its own userspace tailscaled,
  joined with an ephemeral pre-auth key; its SSH goes through its SOCKS5 proxy; it logs
  JSON (`--log-format json`), and everything it prints is checked at its SIGTERM: one
  JSON object per line, no raw warning;
- "client": a third tailscaled; the official MCP SDK client dials the agent's
  tailnet address through that node's SOCKS5 proxy.

The tests prove the path, not just the answer: who sshd saw, who the agent logged,
which sockets exist, and what happens when pieces die.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import pytest_asyncio
from mcp.types import CallToolResult

from tailscale_userspace import TailscaleNode, exposed_listeners
from tailscale_userspace.listeners import listeners
from tests.support.agent_process import (
    AgentProcess,
    alive,
    mcp_through,
    ready_url,
    server_env,
    sockets,
    spawn_agent,
    tailscaled_children,
)
from tests.support.output import assert_json_lines, assert_no_warning
from tests.support.sshd import Sshd
from tests.support.tailnet import TestTailnet, free_port
from tests.support.waiting import wait_until

AGENT_HOSTNAME = "agent-e2e"


@dataclass
class Topology:
    tailnet: TestTailnet
    sshd: Sshd
    server: TailscaleNode
    client: TailscaleNode
    agent: AgentProcess
    url: str
    port: int


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def topology(tailnet: TestTailnet, sshd: Sshd, tmp_path_factory: pytest.TempPathFactory
                   ) -> AsyncIterator[Topology]:
    server = await tailnet.node("server", user="ops")
    client = await tailnet.node("client", user="bob")
    server_ip = server.info.ips[0] if server.info else ""
    # The agent trusts the sshd host key under the server's tailnet address.
    work = tmp_path_factory.mktemp("agent")
    port = free_port()
    env = {**tailnet.env(user="agent", hostname=AGENT_HOSTNAME),
           **server_env(sshd, server_ip, work)}
    agent = spawn_agent(env, "--port", str(port), "--log-format", "json")
    try:
        url = await ready_url(agent, (client, server))
        yield Topology(tailnet, sshd, server, client, agent, url, port)
    finally:
        agent.stop()


async def test_client_node_runs_tools_on_the_server_through_the_agent(topology: Topology) -> None:
    t = topology
    agent_name = t.url.split("//")[1].split(":")[0]
    assert agent_name.startswith(AGENT_HOSTNAME), t.url
    async with mcp_through(t.client, t.url) as mcp:
        listed = await mcp.call_tool("list_commands", {})
        assert not listed.is_error
        assert "disk_usage" in {c["name"] for c in listed.structured_content["commands"]}
        disk = await mcp.call_tool("check_disk", {})
        assert not disk.is_error, disk.content
        assert "Filesystem" in disk.structured_content["stdout"]
        overview = await mcp.call_tool("system_overview", {})
        assert not overview.is_error, overview.content
        results = overview.structured_content["results"]
        assert all(r["exit_status"] == 0 for r in results)
        hostname = next(r for r in results if r["command"] == "hostname")
        assert hostname["stdout"].strip() == os.uname().nodename
        pong = await mcp.call_tool("ping", {})
    # The request reached the agent through the tailnet, from the client node:
    who = pong.structured_content["identity"]
    assert who.startswith(t.tailnet.login_name("bob")) and "client" in who, who
    await t.agent.wait_for(r"bob \(client[^)]*\) runs disk_usage on server", within=10)


async def test_ssh_goes_through_socks5_to_the_servers_tailnet_address(topology: Topology) -> None:
    t = topology
    async with mcp_through(t.client, t.url) as mcp:
        assert not (await mcp.call_tool("check_memory", {})).is_error
        # sshd saw the connection arrive from the server node's tailscaled (127.0.0.1),
        # and that tailscaled says the peer is the agent's node.
        ports = re.findall(r"Accepted publickey for \S+ from 127\.0\.0\.1 port (\d+)",
                           t.sshd.log_text())
        assert ports, t.sshd.log_text()
        callers = [await t.server.localapi.whois(f"127.0.0.1:{p}") for p in ports]
        names = [c.node_name for c in callers if c is not None]
        assert any(n.startswith(AGENT_HOSTNAME) for n in names), names
    # The agent process itself never connects to sshd's port: only to its SOCKS5 proxy.
    established = sockets(t.agent.proc.pid, "-t", "state", "established")
    assert not [s for s in established if f":{t.sshd.port} " in s + " "], established
    tailscaled = tailscaled_children(t.agent.proc.pid)
    assert len(tailscaled) == 1


async def test_local_process_gets_403_and_agent_listens_on_loopback_only(
    topology: Topology,
) -> None:
    t = topology
    async with httpx.AsyncClient() as local:
        response = await local.get(f"http://127.0.0.1:{t.port}/healthz")
        assert response.status_code == 403
        response = await local.post(
            f"http://127.0.0.1:{t.port}/mcp",
            json={"jsonrpc": "2.0", "id": 1, "method": "ping"},
            headers={"Accept": "application/json, text/event-stream"},
        )
        assert response.status_code == 403
    listening = sockets(t.agent.proc.pid, "-lt")
    assert listening, "the agent listens on nothing?"
    for line in listening:
        local_address = line.split()[3]
        assert local_address.startswith("127.0.0.1:"), listening
    # Its own tailscaled is the build the executable embeds, and listens on loopback only
    # (an upstream build would serve its peerapi on 0.0.0.0).
    (tailscaled,) = tailscaled_children(t.agent.proc.pid)
    version = await asyncio.to_thread(
        subprocess.run, [os.readlink(f"/proc/{tailscaled}/exe"), "--version"],
        capture_output=True, text=True, check=True)
    assert "-tailnet-agent-trimmed" in version.stdout
    assert listeners(tailscaled), "tailscaled listens on nothing (not even SOCKS5)?"
    assert exposed_listeners(tailscaled) == []


async def test_agent_restarts_a_killed_tailscaled_and_keeps_serving(topology: Topology) -> None:
    t = topology
    (old,) = tailscaled_children(t.agent.proc.pid)
    os.kill(old, signal.SIGKILL)
    await t.agent.wait_for(r"tailscaled exited unexpectedly", within=15)
    last_error: object = None

    async def answered() -> CallToolResult | None:
        nonlocal last_error
        try:
            async with mcp_through(t.client, t.url) as mcp:
                result = await mcp.call_tool("check_memory", {})
        except Exception as exc:  # the node is rejoining; try again
            last_error = exc
            return None
        last_error = result.content
        return None if result.is_error else result

    try:
        result = await wait_until(answered, 90, "a successful call after the restart", every=1)
    except AssertionError as exc:
        raise AssertionError(f"{exc}: {last_error}\n{t.agent.output}") from None
    assert result is not None
    assert "Mem:" in result.structured_content["stdout"]
    (new,) = tailscaled_children(t.agent.proc.pid)
    assert new != old


async def test_sigterm_logs_the_ephemeral_node_out_and_leaves_no_tailscaled(
    topology: Topology,
) -> None:
    t = topology
    owned = tailscaled_children(t.agent.proc.pid)
    assert owned
    assert any(n.get("name") == AGENT_HOSTNAME for n in t.tailnet.headscale.nodes())
    assert t.agent.stop() == 0
    assert t.tailnet.wait_node_gone(AGENT_HOSTNAME, timeout=30), t.tailnet.headscale.nodes()
    assert not [pid for pid in owned if alive(pid)]
    # From its start to its exit, stdout and stderr together: JSON only, and no warning.
    assert_no_warning(t.agent.output)
    assert_json_lines(t.agent.output, "the agent's output")


async def test_without_an_auth_key_the_agent_prints_the_login_url_and_waits(
    tailnet: TestTailnet,
) -> None:
    env = tailnet.env(user=None, hostname="agent-login")
    agent = spawn_agent(env, "--port", str(free_port()))
    try:
        match = await agent.wait_for(r"open (http://\S+/register/\S+)", within=60)
        assert match.group(1).startswith(tailnet.control_url)
        await asyncio.sleep(2)
        assert agent.proc.poll() is None, agent.output
        owned = tailscaled_children(agent.proc.pid)
        assert owned
    finally:
        assert agent.stop() == 0
    assert not [pid for pid in owned if alive(pid)]


async def test_trust_over_the_tailnet_pins_the_servers_key(
    tailnet: TestTailnet, sshd: Sshd, tmp_path: Path
) -> None:
    server = await tailnet.node("server-trust", user="ops")
    server_ip = server.info.ips[0] if server.info else ""
    known = tmp_path / "known_hosts"
    env = {
        **os.environ,
        **tailnet.env(user="agent", hostname="agent-trust"),
        "REMOTE_HOST": server_ip,
        "REMOTE_USER": sshd.user,
        "REMOTE_SSH_PORT": str(sshd.port),
        "REMOTE_SSH_KEY_PATH": str(sshd.client_key),
        "REMOTE_SSH_KNOWN_HOSTS": str(known),
    }
    expected = (await asyncio.to_thread(
        subprocess.run, ["ssh-keygen", "-lf", f"{sshd.host_key}.pub"], capture_output=True,
        text=True, check=True)).stdout.split()[1]
    result = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "agent.cli", "trust", "default", "--tailnet", "--yes",
         "--env-file", "/dev/null"],
        env=env, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"Pinned {expected}" in result.stdout
    assert known.read_text().startswith(f"[{server_ip}]:{sshd.port} ")


async def test_serve_refuses_a_tailscaled_that_listens_beyond_loopback(
    tailnet: TestTailnet,
) -> None:
    # The untrimmed build (what a pip user might take from PATH) serves its peerapi on
    # every interface: serve stops with the fix, unless told to go on (then it warns).
    full = {**tailnet.env(user="agent", hostname="agent-exposed"),
            "TAILSCALED": str(tailnet.binaries.tailscaled)}
    refused = spawn_agent(full, "--port", str(free_port()))
    try:
        code = await asyncio.to_thread(refused.proc.wait, 120)
    finally:
        refused.stop()
    assert code != 0, refused.output
    assert re.search(r"listens on (0\.0\.0\.0|\[::\]):\d+, beyond loopback", refused.output)
    assert "--allow-exposed-tailscaled" in refused.output and "Traceback" not in refused.output
    allowed = spawn_agent({**full, "TS_HOSTNAME": "agent-exposed-ok"}, "--port",
                          str(free_port()), "--allow-exposed-tailscaled")
    try:
        await allowed.wait_for(r"WARNING: tailscaled .* listens on .*Serving anyway")
        await allowed.wait_for(r"Ready\.")
    finally:
        assert allowed.stop() == 0
