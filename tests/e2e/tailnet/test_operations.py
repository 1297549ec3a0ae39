"""Metrics, readiness and the health check of `tailnet-agent serve`, over the real tailnet.

Topology: a headscale of its own whose tailnet policy grants the user `prom` the
metrics through our app capability (`{"commands": [], "metrics": true}`); `bob` and a
tagged CI node get nothing beyond the defaults. The agent is `tailnet-agent serve
--socket ...` as a subprocess; "server" is a tailscaled node in front of the real sshd.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import httpx2
import pytest
import pytest_asyncio

from agent.access.grants import CAPABILITY
from tailscale_userspace import TailscaleNode
from tests.support.agent_process import AgentProcess, spawn_agent
from tests.support.headscale_policy import allow_all_with_grants, policy_tailnet_fixture
from tests.support.sshd import Sshd
from tests.support.tailnet import TestTailnet, free_port, wait_peer

AGENT_HOSTNAME = "agent-ops"
ops_tailnet = policy_tailnet_fixture({
    **allow_all_with_grants({"src": ["prom@"], "dst": ["agent@"],
                             "app": {CAPABILITY: [{"commands": [], "metrics": True}]}}),
    "tagOwners": {"tag:ci": ["ops@"]},
})


@dataclass
class Topology:
    prom: TailscaleNode
    bob: TailscaleNode
    ci: TailscaleNode
    agent: AgentProcess
    base: str  # http://<agent's MagicDNS name>:<port>
    port: int
    socket: Path


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def topology(ops_tailnet: TestTailnet, sshd: Sshd,
                   tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Topology]:
    net = ops_tailnet
    server = await net.node("server", user="ops")
    prom = await net.node("prom-box", user="prom")
    bob = await net.node("bob-laptop", user="bob")
    ci = await net.node("ci-runner", user="ops", tags=("tag:ci",))
    assert server.info is not None
    work = tmp_path_factory.mktemp("agent-ops")
    key_type, key_data = Path(f"{sshd.host_key}.pub").read_text().split()[:2]
    (work / "known_hosts").write_text(f"[{server.info.ips[0]}]:{sshd.port} {key_type} "
                                      f"{key_data}\n")
    env = {
        **net.env(user="agent", hostname=AGENT_HOSTNAME),
        "REMOTE_HOST": server.info.ips[0],
        "REMOTE_HOST_NAME": "server",
        "REMOTE_USER": sshd.user,
        "REMOTE_SSH_PORT": str(sshd.port),
        "REMOTE_SSH_KEY_PATH": str(sshd.client_key),
        "REMOTE_SSH_KNOWN_HOSTS": str(work / "known_hosts"),
    }
    port = free_port()
    socket = work / "run" / "agent.sock"
    agent = spawn_agent(env, "--port", str(port), "--socket", str(socket),
                        "--audit-log", str(work / "audit.jsonl"))
    try:
        url = (await agent.wait_for(r"MCP endpoint: (http://\S+)/mcp")).group(1)
        await agent.wait_for(r"Ready\.")
        for node in (prom, bob, ci):
            await wait_peer(node, url.split("//")[1].rsplit(":", 1)[0], within=60)
        yield Topology(prom, bob, ci, agent, url, port, socket)
    finally:
        agent.stop()


@pytest.fixture(autouse=True)
def _no_internet_proxies(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy"):
        monkeypatch.delenv(name, raising=False)
    yield


def through(node: TailscaleNode) -> httpx2.AsyncClient:
    host, port = node.socks5
    return httpx2.AsyncClient(proxy=f"socks5://{host}:{port}", trust_env=False, timeout=60)


def health(t: Topology, *args: str) -> subprocess.CompletedProcess[str]:
    """`tailnet-agent health`, as the container's HEALTHCHECK runs it."""
    return subprocess.run(
        [sys.executable, "-m", "agent.cli", "health", "--socket", str(t.socket), *args],
        capture_output=True, text=True, timeout=60, check=False,
    )


async def test_metrics_over_the_tailnet_only_for_the_granted_identity(t: Topology) -> None:
    async with through(t.prom) as http:
        granted = await http.get(f"{t.base}/metrics")
        ready = await http.get(f"{t.base}/readyz")
    assert granted.status_code == 200, granted.text
    assert 'tailnet_agent_tailnet_state{state="Running"} 1.0' in granted.text
    assert 'tailnet_agent_info{version="' in granted.text
    assert ready.status_code == 200 and ready.json()["hosts"] == {"server": "reachable"}

    for node, who in ((t.bob, "bob"), (t.ci, "tag:ci")):
        async with through(node) as http:
            refused = await http.get(f"{t.base}/metrics")
            ready = await http.get(f"{t.base}/readyz")
        assert refused.status_code == 403, (who, refused.text)
        assert f"{who} may not read this agent's metrics" in refused.text
        # Readiness for any tailnet peer, but no host names for those without the right.
        assert ready.status_code == 200 and ready.json() == {
            "ready": True, "reason": "ready", "tailnet": "Running"}

    # A process on the agent's machine that is not tailscaled: nobody vouches for it.
    async with httpx.AsyncClient() as local:
        for route in ("/metrics", "/readyz"):
            assert (await local.get(f"http://127.0.0.1:{t.port}{route}")).status_code == 403


async def test_a_refused_flood_is_counted_and_the_agent_keeps_answering(t: Topology) -> None:
    async with through(t.prom) as http:
        before = (await http.get(f"{t.base}/metrics")).text

    async def hostile(http: httpx2.AsyncClient) -> list[int]:
        return [(await http.get(f"{t.base}/metrics")).status_code for _ in range(50)]

    async with through(t.bob) as http:
        codes = await asyncio.gather(*(hostile(http) for _ in range(10)))
    assert [c for batch in codes for c in batch] == [403] * 500
    async with through(t.prom) as http:
        after = await http.get(f"{t.base}/metrics")
    assert after.status_code == 200

    def refused(text: str) -> float:
        line = next((line for line in text.splitlines() if line.startswith(
            'tailnet_agent_http_responses_total{code="403",route="metrics"}')), "x 0")
        return float(line.split()[-1])

    assert refused(after.text) - refused(before) == 500


async def test_the_health_command_asks_the_local_socket(t: Topology) -> None:
    done = await asyncio.to_thread(health, t)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.startswith("ready (tailnet Running); hosts: server: "), done.stdout
    live = await asyncio.to_thread(health, t, "--live")
    assert (live.returncode, live.stdout.strip()) == (0, "alive: tailnet Running")
    assert oct(t.socket.stat().st_mode & 0o777) == "0o600"


async def test_after_the_agent_stops_the_health_check_fails(t: Topology) -> None:
    assert t.agent.stop() == 0
    assert not t.socket.exists()
    done = await asyncio.to_thread(health, t)
    assert done.returncode == 1
    assert done.stdout.startswith(f"unhealthy: no answer on {t.socket}"), done.stdout


@pytest.fixture
def t(topology: Topology) -> Topology:
    return topology


async def test_while_the_node_waits_to_join_the_socket_says_why_it_is_not_ready(
    ops_tailnet: TestTailnet, tmp_path: Path
) -> None:
    socket = tmp_path / "agent.sock"
    # No auth key: the node waits for its login URL to be approved, for ever.
    agent = spawn_agent(ops_tailnet.env(user=None, hostname="agent-waiting"), "--port",
                        str(free_port()), "--socket", str(socket))
    try:
        await agent.wait_for(r"open http://\S+/register/", within=60)
        done = await asyncio.to_thread(subprocess.run, [
            sys.executable, "-m", "agent.cli", "health", "--socket", str(socket)],
            capture_output=True, text=True, timeout=60, check=False)
        assert done.returncode == 1
        assert done.stdout.strip() == ("not ready: the tailnet node is NeedsLogin, not Running "
                                       "(tailnet NeedsLogin)"), done.stdout
    finally:
        assert agent.stop() == 0
