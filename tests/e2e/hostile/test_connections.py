"""Item 3: idle and slow connections cannot take the server down.

The agent runs as `serve --local` in a subprocess limited to 256 descriptors (as in
the attack that made every legitimate request time out), with short read timeouts.
Attackers connect from 127.0.0.2-5, the legitimate client from 127.0.0.1: in local
mode a peer is its address (in tailnet mode, its node, by WhoIs).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from agent.hosts.inventory import HostConfig
from agent.web.connections import ConnectionLimits
from tests.support.agents import running_agent, settings_for
from tests.support.components import require_executable
from tests.support.peers import MCP_HEADERS, initialize_body
from tests.support.tailnet import free_port
from tests.support.waiting import wait_until, wait_until_sync

DESCRIPTORS = 256
HEADER_TIMEOUT = 2.0
BODY_TIMEOUT = 3.0


class Agent:
    def __init__(self, proc: subprocess.Popen[bytes], port: int, log: Path) -> None:
        self.proc, self.port, self.log = proc, port, log

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def descriptors(self) -> int:
        return len(os.listdir(f"/proc/{self.proc.pid}/fd"))


@pytest.fixture
def agent(ssh_host: HostConfig, tmp_path: Path) -> Iterator[Agent]:
    prlimit = require_executable("prlimit", "apt-get install util-linux")
    port = free_port()
    log = tmp_path / "agent.log"
    env = {**os.environ, "XDG_STATE_HOME": str(tmp_path), "REMOTE_HOST": ssh_host.address,
           "REMOTE_USER": ssh_host.user, "REMOTE_SSH_PORT": str(ssh_host.port),
           "REMOTE_SSH_KEY_PATH": str(ssh_host.key_path),
           "REMOTE_SSH_KNOWN_HOSTS": str(ssh_host.known_hosts),
           "TAILNET_AGENT_HTTP_HEADER_TIMEOUT": str(HEADER_TIMEOUT),
           "TAILNET_AGENT_HTTP_BODY_TIMEOUT": str(BODY_TIMEOUT)}
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [prlimit, f"--nofile={DESCRIPTORS}:{DESCRIPTORS}", sys.executable, "-m",
             "agent.cli", "serve", "--local", "--port", str(port), "--env-file", "/dev/null"],
            env=env, stdout=out, stderr=subprocess.STDOUT, cwd=tmp_path)
    running = Agent(proc, port, log)
    try:
        def ready() -> bool:
            assert proc.poll() is None, log.read_text()
            return b"Ready." in log.read_bytes()

        # A bound for a loaded machine, not a wait.
        wait_until_sync(ready, 120, "the agent printing Ready.", every=0.1)
        yield running
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def attack(port: int, source: str, count: int, first: bytes = b"") -> list[socket.socket]:
    """Open `count` connections from `source`, each sending `first` and then nothing."""
    held: list[socket.socket] = []
    for _ in range(count):
        s = socket.socket()
        s.bind((source, 0))
        s.settimeout(5)
        try:
            s.connect(("127.0.0.1", port))
            if first:
                s.sendall(first)
        except OSError:
            s.close()
            continue
        held.append(s)
    return held


def still_open(sockets: list[socket.socket]) -> int:
    """How many of these connections the server has not closed."""
    alive = 0
    for s in sockets:
        s.setblocking(False)
        try:
            alive += s.recv(1) != b""
        except BlockingIOError:
            alive += 1
        except OSError:
            pass
    return alive


async def legitimate_calls(agent: Agent, count: int) -> list[float]:
    """`count` requests from 127.0.0.1, each on a new connection: healthz and an MCP
    initialize; returns how long each took (it raises if one fails)."""
    took: list[float] = []
    for n in range(count):
        transport = httpx.AsyncHTTPTransport(local_address="127.0.0.1")
        async with httpx.AsyncClient(transport=transport, base_url=agent.base,
                                     timeout=5) as http:
            started = time.monotonic()
            if n % 2:
                response = await http.post("/mcp", json=initialize_body(), headers=MCP_HEADERS)
            else:
                response = await http.get("/healthz")
            assert response.status_code == 200, response.text
            took.append(time.monotonic() - started)
    return took


def close_all(*groups: list[socket.socket]) -> None:
    for group in groups:
        for s in group:
            with contextlib.suppress(OSError):
                s.close()


async def test_one_peer_holding_idle_sockets_locks_nobody_out(agent: Agent) -> None:
    idle = await asyncio.to_thread(attack, agent.port, "127.0.0.2", 300)
    try:
        assert len(idle) > 250  # the kernel accepted them; the agent decides what stays
        took = await legitimate_calls(agent, 30)
        assert max(took) < 2.0, took
        assert still_open(idle) <= 64  # the per-peer cap
        assert agent.descriptors() < DESCRIPTORS - 32
    finally:
        close_all(idle)


async def test_many_peers_and_slow_requests_lock_nobody_out(agent: Agent) -> None:
    groups = [
        await asyncio.to_thread(attack, agent.port, "127.0.0.2", 100),
        await asyncio.to_thread(attack, agent.port, "127.0.0.3", 100,
                                b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n"),
        await asyncio.to_thread(attack, agent.port, "127.0.0.4", 100,
                                b"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                                b"Content-Length: 100000\r\n\r\nabc"),
        await asyncio.to_thread(attack, agent.port, "127.0.0.5", 100),
    ]
    try:
        took = await legitimate_calls(agent, 30)
        assert max(took) < 2.0, took
        assert agent.descriptors() < DESCRIPTORS - 16
        # Partial heads and bodies do not stay: all are closed within their timeouts.
        await wait_until(lambda: sum(still_open(g) for g in groups) == 0, BODY_TIMEOUT + 5,
                         "every partial request closed")
        await legitimate_calls(agent, 4)
    finally:
        close_all(*groups)
    # The refused and timed-out sockets are worth a few lines of log, not 100 MB.
    assert agent.log.stat().st_size < 100_000, agent.log.stat().st_size
    assert b"Too many open files" not in agent.log.read_bytes()


async def test_in_tailnet_mode_a_peer_is_its_node_not_its_address(ssh_host: HostConfig) -> None:
    # Through tailscaled every peer arrives from 127.0.0.1; the guard asks who is behind
    # each connection (WhoIs in `serve`; here a stand-in naming 127.0.0.2-3 one node).
    async def node_of(address: tuple[str, int]) -> str | None:
        await asyncio.sleep(0.01)  # WhoIs is a LocalAPI round trip
        return {"127.0.0.2": "mallory-node", "127.0.0.3": "mallory-node"}.get(address[0])

    limits = ConnectionLimits(total=200, per_peer=10, header_timeout=30, body_timeout=30)
    async with running_agent(settings_for(ssh_host), limits=limits, peer_key=node_of) as agent:
        port = int(agent.base.rsplit(":", 1)[1])
        held = [*(await asyncio.to_thread(attack, port, "127.0.0.2", 30)),
                *(await asyncio.to_thread(attack, port, "127.0.0.3", 30))]
        try:
            # One node, one cap, whatever its addresses.
            await wait_until(lambda: still_open(held) <= 10, 10, "at most 10 left open")
            async with httpx.AsyncClient(base_url=agent.base, timeout=5) as http:
                for _ in range(20):
                    assert (await http.get("/healthz")).status_code == 200
        finally:
            close_all(held)
