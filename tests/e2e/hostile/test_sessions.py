"""Item 4: MCP sessions have owners and per-caller caps; a flood of them locks no one out."""

from __future__ import annotations

import asyncio
import contextlib
import gc
from pathlib import Path

from agent.hosts.inventory import HostConfig
from agent.web.mcp_sessions import SessionGuard
from tests.support.agents import RunningAgent, running_agent, settings_for
from tests.support.peers import (
    ALICE,
    MALLORY_USER,
    MCP_HEADERS,
    by_address,
    http_from,
    initialize_body,
    mcp_from,
    open_session,
    session_headers,
)

PEERS = {"127.0.0.2": MALLORY_USER, "127.0.0.3": ALICE}
MiB = 1024 * 1024


def rss() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def guard_of(agent: RunningAgent) -> SessionGuard:
    return agent.agent.sessions  # the SessionGuard in front of the SDK's endpoint


async def initialize_flood(url: str, source: str, count: int) -> dict[int, int]:
    statuses: dict[int, int] = {}
    limit = asyncio.Semaphore(16)
    async with http_from(source, timeout=30) as http:

        async def one() -> None:
            async with limit:
                response = await http.post(url, json=initialize_body(), headers=MCP_HEADERS)
                statuses[response.status_code] = statuses.get(response.status_code, 0) + 1

        await asyncio.gather(*(one() for _ in range(count)))
    return statuses


async def test_three_thousand_initializes_cost_little_and_lock_no_one_out(
    ssh_host: HostConfig,
) -> None:
    async with running_agent(settings_for(ssh_host), resolver=by_address(PEERS)) as agent:
        async with mcp_from(agent.url, "127.0.0.3", mode="legacy") as alice:
            assert not (await alice.call_tool("ping", {})).is_error
        gc.collect()
        before = rss()
        statuses = await initialize_flood(agent.url, "127.0.0.2", 3000)
        gc.collect()
        grown = rss() - before
        guard = guard_of(agent)
        assert statuses == {200: 3000}  # each newcomer evicts Mallory's own oldest idle one
        assert guard.count(MALLORY_USER.key) == 16
        assert grown < 60 * MiB, grown / MiB
        # Alice was never locked out, before, during or after.
        async with mcp_from(agent.url, "127.0.0.3", mode="legacy") as alice:
            result = await alice.call_tool("execute_command", {"command": "hostname"})
            assert not result.is_error


async def test_a_session_answers_only_the_identity_that_opened_it(ssh_host: HostConfig) -> None:
    async with running_agent(settings_for(ssh_host), resolver=by_address(PEERS)) as agent:
        async with http_from("127.0.0.3", timeout=30) as alice:
            sessions = [await open_session(alice, agent.url) for _ in range(10)]
        async with http_from("127.0.0.2", timeout=30) as mallory:
            for session in sessions:
                for request in (
                    {"jsonrpc": "2.0", "id": 9, "method": "tools/call",
                     "params": {"name": "execute_command", "arguments": {"command": "hostname"}}},
                    {"jsonrpc": "2.0", "id": 10, "method": "tools/list"},
                ):
                    stolen = await mallory.post(agent.url, json=request,
                                                headers=session_headers(session))
                    assert stolen.status_code == 404 and "Session not found" in stolen.text
                deleted = await mallory.delete(agent.url, headers=session_headers(session))
                assert deleted.status_code == 404
                stream = await mallory.get(agent.url, headers={
                    **session_headers(session), "Accept": "text/event-stream"})
                assert stream.status_code == 404
        # Alice's sessions are all still hers and alive.
        async with http_from("127.0.0.3", timeout=30) as alice:
            for session in sessions:
                listed = await alice.post(agent.url, headers=session_headers(session), json={
                    "jsonrpc": "2.0", "id": 11, "method": "tools/list"})
                assert listed.status_code == 200 and "execute_command" in listed.text


async def test_busy_sessions_are_not_evicted_and_the_caller_is_told(
    ssh_host: HostConfig,
) -> None:
    settings = settings_for(ssh_host, mcp_sessions_per_identity=4)
    async with (running_agent(settings, resolver=by_address(PEERS)) as agent,
                http_from("127.0.0.2", timeout=30) as mallory):
        sessions = [await open_session(mallory, agent.url) for _ in range(4)]
        # Each session holds its GET stream open: in use, so not evicted.
        streams = [mallory.stream("GET", agent.url, headers={
            **session_headers(s), "Accept": "text/event-stream"}) for s in sessions]
        async with contextlib.AsyncExitStack() as stack:
            for stream in streams:
                response = await stack.enter_async_context(stream)
                assert response.status_code == 200
            refused = await mallory.post(agent.url, json=initialize_body(),
                                         headers=MCP_HEADERS)
            assert refused.status_code == 429
            assert "too many open MCP sessions" in refused.text
        # Streams closed, sessions 1-3 used since: the next initialize evicts the session
        # idle the longest, session 0.
        await asyncio.sleep(0.2)
        for session in sessions[1:]:
            await mallory.post(agent.url, headers=session_headers(session), json={
                "jsonrpc": "2.0", "id": 2, "method": "tools/list"})
        opened = await mallory.post(agent.url, json=initialize_body(), headers=MCP_HEADERS)
        assert opened.status_code == 200
        gone = await mallory.post(agent.url, headers=session_headers(sessions[0]), json={
            "jsonrpc": "2.0", "id": 3, "method": "tools/list"})
        assert gone.status_code == 404
