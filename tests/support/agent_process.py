"""`tailnet-agent serve` as a subprocess, watched as a person watches it: what it prints,
which processes it owns (its tailscaled) and which sockets it holds; and an MCP client that
reaches it through a tailnet node's SOCKS5 proxy."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from tailscale_userspace import TailscaleNode
from tests.support.sshd import Sshd
from tests.support.tailnet import wait_peer
from tests.support.waiting import wait_until


@dataclass
class AgentProcess:
    proc: subprocess.Popen[str]
    lines: list[str] = field(default_factory=list)

    def start_reader(self) -> None:
        def read() -> None:
            assert self.proc.stdout is not None
            for line in self.proc.stdout:
                self.lines.append(line)

        threading.Thread(target=read, daemon=True).start()

    @property
    def output(self) -> str:
        return "".join(self.lines)

    async def wait_for(self, pattern: str, within: float = 90.0) -> re.Match[str]:
        # Async, so the session's tailscaled log readers keep running while we wait.
        def printed() -> re.Match[str] | None:
            exited = self.proc.poll() is not None  # before the search: its last lines are in
            if match := re.search(pattern, self.output):
                return match
            if exited:
                raise AssertionError(f"agent exited without printing {pattern!r}")
            return None

        try:
            match = await wait_until(printed, within, f"the agent printing {pattern!r}", every=0.1)
        except AssertionError as exc:
            raise AssertionError(f"{exc}; output:\n{self.output}") from None
        assert match is not None
        return match

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=30)


def spawn_agent(env: dict[str, str], *args: str) -> AgentProcess:
    agent = AgentProcess(
        subprocess.Popen(
            [sys.executable, "-m", "agent.cli", "serve", "-v", "--env-file", "/dev/null", *args],
            env={**os.environ, **env},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
    )
    agent.start_reader()
    return agent


def server_env(sshd: Sshd, server_ip: str, work: Path) -> dict[str, str]:
    """REMOTE_* for the agent: the sshd behind the server node, its host key pinned under the
    server's tailnet address (in work/known_hosts)."""
    known_hosts = work / "known_hosts"
    key = Path(f"{sshd.host_key}.pub").read_text().split()
    known_hosts.write_text(f"[{server_ip}]:{sshd.port} {key[0]} {key[1]}\n")
    return {
        "REMOTE_HOST": server_ip,
        "REMOTE_HOST_NAME": "server",
        "REMOTE_USER": sshd.user,
        "REMOTE_SSH_PORT": str(sshd.port),
        "REMOTE_SSH_KEY_PATH": str(sshd.client_key),
        "REMOTE_SSH_KNOWN_HOSTS": str(known_hosts),
    }


async def ready_url(agent: AgentProcess, peers: Iterable[TailscaleNode]) -> str:
    """The spawned agent's MCP URL, once it is ready and every peer can reach it."""
    url = (await agent.wait_for(r"MCP endpoint: (http://\S+/mcp)")).group(1)
    await agent.wait_for(r"Ready\.")
    # Peers learn a new node's DERP region a few seconds after it joins; a dial before
    # that fails in SOCKS5.
    agent_name = url.split("//")[1].rsplit(":", 1)[0]
    for node in peers:
        await wait_peer(node, agent_name, within=60)
    return url


def children(pid: int) -> list[int]:
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        with open(task / "children") as f:
            for child in f.read().split():
                found += [int(child), *children(int(child))]
    return found


def process_name(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except OSError:
        return False
    return state != "Z"


def tailscaled_children(pid: int) -> list[int]:
    return [c for c in children(pid) if process_name(c).startswith("tailscaled")]


def sockets(pid: int, *flags: str) -> list[str]:
    out = subprocess.run(["ss", "-Hnp", *flags], capture_output=True, text=True, check=True)
    return [line for line in out.stdout.splitlines() if f"pid={pid}," in line]


def mcp_through(node: TailscaleNode, url: str) -> Client:
    host, port = node.socks5
    http = httpx2.AsyncClient(proxy=f"socks5://{host}:{port}", timeout=httpx2.Timeout(30.0))
    return Client(streamable_http_client(url, http_client=http))
