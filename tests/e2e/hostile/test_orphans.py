"""Item 2: a cancelled, disconnected or abandoned call leaves nothing running on the host,
on both ways a command runs (exec channel, persistent shell), and frees its place only then.

Each test sleeps with a duration no other test uses, and processes are counted on the
test's own sshd only (`Sshd.processes`), so the count is this test's leftovers, whatever
else runs on the machine as the same user (zombies do not match).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import random
import time
from collections import Counter
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from mcp import Client
from mcp.types import ElicitResult

from agent.access.identity import Identity
from agent.hosts.inventory import HostConfig
from agent.settings import Settings
from agent.ssh import SSHPool
from tests.support.agents import running_agent, settings_for
from tests.support.cancels import still_running
from tests.support.peers import http_from, open_session, session_headers
from tests.support.services import ServiceFactory
from tests.support.sshd import Sshd
from tests.support.waiting import wait_until
from whitelist import load_catalog

LOCAL = Identity(login="me", node="here", source="local")


async def gone(sshd: Sshd, pattern: str) -> list[str]:
    """What still runs of `pattern` 2 s from now (checked off the event loop, which the
    agent under test shares)."""
    return await asyncio.to_thread(sshd.wait_until_gone, pattern, 2.0)


def marker() -> str:
    return f"{random.randint(1000, 9999)}.{random.randint(100, 999)}"


def nap_catalog(directory: Path, sleep: str, another: str) -> Path:
    """A catalog with `nap` (the fast path) and `another` command, both running `sleep`."""
    catalog = directory / "naps.yaml"
    more = another.replace("{sleep}", sleep).strip("\n")
    catalog.write_text(f"""
commands:
  nap:
    description: Sleep (test command).
    category: Test
    template: "{sleep}"
    timeout: 30
{more}
""")
    return catalog


@pytest.mark.parametrize("path", ["exec", "fast"])
async def test_sixty_cancels_mid_command_leave_no_process_and_free_every_slot(
    ssh_host: HostConfig, sshd: Sshd, path: str
) -> None:
    pool = SSHPool({"test": ssh_host})
    sleep = f"sleep {marker()}"
    destructive = path == "exec"  # destructive commands always take an exec channel
    try:
        for n in range(60):
            task = asyncio.create_task(pool.run("test", f"{sleep}; echo never", command_name="s",
                                                timeout=30, max_output=1000,
                                                destructive=destructive))
            # Cancel at varied points: before, while and after the command starts.
            await asyncio.sleep((n % 6) * 0.03)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            # The caller's cancel returns only once the tree is stopped and the slot is free.
            assert still_running(sshd, sleep) == [], n
            state = pool._hosts["test"]
            assert state.slots.busy == 0, n
        assert pool.stopped("test") >= 20  # many were running when cancelled
        # sshd kept no session for them: all eight channels open again at once.
        results = await asyncio.gather(*(
            pool.run("test", f"echo {i}", command_name="e", timeout=10, max_output=1000,
                     destructive=destructive) for i in range(8)))
        assert [r.stdout for r in results] == [f"{i}\n" for i in range(8)]
    finally:
        await pool.close()
        left = sshd.processes(sleep)
    assert left == []


async def test_a_flood_of_concurrent_cancels_on_both_paths(
    ssh_host: HostConfig, sshd: Sshd
) -> None:
    pool = SSHPool({"test": ssh_host})
    sleep = f"sleep {marker()}"
    try:
        for _ in range(5):
            tasks = [asyncio.create_task(pool.run(
                "test", sleep, command_name="s", timeout=30, max_output=1000,
                destructive=i % 2 == 0)) for i in range(16)]  # 16 callers, 8 channels
            await asyncio.sleep(0.4)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            assert await gone(sshd, sleep) == []
        ok = await pool.run("test", "echo ok", command_name="e", timeout=10, max_output=100)
        assert ok.stdout == "ok\n"
    finally:
        await pool.close()


async def test_mcp_cancellation_and_vanished_clients_stop_the_remote_command(
    ssh_host: HostConfig, sshd: Sshd, tmp_path: Path
) -> None:
    sleep = f"sleep {marker()}"
    catalog = nap_catalog(tmp_path, sleep, """
  nap_long:
    description: Sleep longer than the fast path takes (test command).
    category: Test
    template: "{sleep}"
    timeout: 90
""")
    settings = settings_for(ssh_host, audit_log=tmp_path / "audit.jsonl")
    async with running_agent(settings, catalogs=[catalog]) as agent:
        async with Client(agent.url) as client:
            # notifications/cancelled (the SDK sends it when a call is abandoned)
            for n in range(20):
                with anyio.move_on_after(0.3 + (n % 3) * 0.1):
                    await client.call_tool("execute_command",
                                           {"command": "nap" if n % 2 else "nap_long"})
                assert await gone(sshd, sleep) == [], n
        # A client whose connection drops before the answer (the 2025 protocol: no cancel).
        async with http_from("127.0.0.1", timeout=30) as http:
            session = await open_session(http, agent.url)
        for n in range(20):
            async with http_from("127.0.0.1", timeout=0.4) as leaving:
                with pytest.raises(httpx.TimeoutException):
                    await leaving.post(agent.url, headers=session_headers(session), json={
                        "jsonrpc": "2.0", "id": 50 + n, "method": "tools/call",
                        "params": {"name": "execute_command",
                                   "arguments": {"command": "nap" if n % 2 else "nap_long"}}})
            assert await gone(sshd, sleep) == [], n
        async with Client(agent.url) as client:
            later = await client.call_tool("execute_command", {"command": "hostname"})
            assert not later.is_error
    records = [json.loads(line) for line in (tmp_path / "audit.jsonl").read_text().splitlines()]
    ends = [r for r in records if r["event"] == "end" and r["outcome"] == "cancelled"]
    assert len(ends) == 40
    assert Counter(r["error"] for r in ends) == {"cancelled": 40}  # no SDK internals


async def test_cancelling_the_task_running_the_service_call_ends_the_remote_tree(
    make_service: ServiceFactory, sshd: Sshd, tmp_path: Path
) -> None:
    # What the chat's stop button (and any front end) does: cancel the task awaiting
    # AgentService.run. By the time the cancelled task has finished, nothing runs.
    sleep = f"sleep {marker()}"
    catalog = nap_catalog(tmp_path, sleep, """
  nap_destructive:
    description: Sleep, on an exec channel (test command).
    category: Test
    template: "{sleep}"
    timeout: 30
    destructive: true
""")
    service = make_service(identity_concurrency=64)
    service.catalog = load_catalog([catalog])

    async def yes() -> None:
        return None

    for n in range(20):
        name = "nap" if n % 2 else "nap_destructive"
        task = asyncio.create_task(service.run(name, {}, host=None, identity=LOCAL, confirm=yes))
        await asyncio.sleep(0.3)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        # Killed by then; a loaded machine may take a moment to reap (the bound is 2 s).
        assert await gone(sshd, sleep) == [], n
    ends = [json.loads(line) for line in (tmp_path / "audit.jsonl").read_text().splitlines()]
    assert Counter(r["outcome"] for r in ends if r["event"] == "end") == {"cancelled": 20}


@pytest.mark.parametrize("mode", ["legacy", "auto"])  # auto: 2026-07-28 with this server
async def test_an_mcp_fan_out_cancelled_just_after_its_confirmation_is_recorded_once_stopped(
    sshd: Sshd, tmp_path: Path, mode: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 19, as found with the official SDK client: a destructive fan-out over 6 hosts,
    cancelled 0-40 ms after its confirmation was accepted (the SDK cancels the handler on
    every await: on 2025-11-25 after notifications/cancelled, on 2026-07-28 when the client
    closes the response stream). The agent writes a host's `cancelled` end record only
    once that host's call has stopped its command and freed its slot, and once every host
    has its end record, nothing of the fan-out runs anywhere."""
    marker = f"{random.randint(100_000, 999_999)}"
    catalog = tmp_path / "boom.yaml"
    catalog.write_text(f"""
commands:
  boom:
    description: A destructive command that runs long (test command).
    category: Test
    template: "sleep 4{{n}}.{marker}"
    timeout: 30
    destructive: true
    parameters:
      n:
        type: integer
        description: the round
        minimum: 0
        maximum: 9
""")
    names = [f"web-{i}" for i in range(6)]
    audit = tmp_path / "audit.jsonl"
    settings = dataclasses.replace(Settings(), hosts={n: sshd.host_config(n) for n in names},
                                   default_host=names[0], audit_log=audit)
    early: list[tuple[str, str]] = []  # (host, outcome) of ends written while its slot was held
    ended: list[str] = []  # the outcome of every end record, as it was written
    running: list[tuple[int, list[str]]] = []  # processes once a round was all recorded
    ran = 0  # rounds whose calls reached the hosts
    async with running_agent(settings, catalogs=[catalog]) as agent:
        # Watch the moment each end record is written (the real records are written).
        hosts: dict[str, str] = {}
        log = agent.service.audit
        start, end = log.start, log.end

        def record_start(call: str, identity: Identity, **fields: Any) -> None:
            hosts[call] = fields["host"]
            start(call, identity, **fields)

        def record_end(call: str, identity: Identity, **fields: Any) -> None:
            host = hosts[call]
            ended.append(fields["outcome"])
            if agent.service.pool._hosts[host].slots.busy:
                early.append((host, fields["outcome"]))
            end(call, identity, **fields)

        monkeypatch.setattr(log, "start", record_start)
        monkeypatch.setattr(log, "end", record_end)
        accepted = asyncio.Event()

        async def accept(context: object, params: object) -> ElicitResult:
            accepted.set()
            return ElicitResult(action="accept", content={"confirm": True})

        async with Client(agent.url, elicitation_callback=accept, mode=mode) as client:
            for n in range(10):
                accepted.clear()
                scope = anyio.CancelScope()

                async def call(n: int = n, scope: anyio.CancelScope = scope) -> None:
                    with scope:
                        await client.call_tool("run_on_hosts", {
                            "command": "boom", "hosts": "all", "parameters": {"n": n},
                            "strategy": "parallel"})  # not a canary host first

                caller = asyncio.create_task(call())
                await asyncio.wait_for(accepted.wait(), 10)
                await asyncio.sleep((n % 5) * 0.01)
                scope.cancel()
                await caller
                # Wait (bounded) for the agent to record every host's call. (A cancel that
                # beat the confirmed call to the agent leaves no record at all.)
                pattern = f"sleep 4{n}.{marker}"
                cancelled = time.monotonic()

                def recorded(n: int = n, cancelled: float = cancelled
                             ) -> tuple[set[str], set[str]] | None:
                    starts, ends = _round_records(audit, n)
                    if (len(starts) == len(names) and ends >= starts) or (
                            not starts and time.monotonic() - cancelled > 2):
                        return starts, ends
                    return None

                starts, _ends = await wait_until(recorded, 10, f"round {n}: every host's call "
                                                 "recorded", every=0.005)
                ran += bool(starts)
                if left := await asyncio.to_thread(still_running, sshd, pattern):
                    running.append((n, left))
                assert await gone(sshd, pattern) == [], n
    print(f"{mode}: of {ran} rounds' calls, {len(early)} recorded while their slot was held; "
          f"{len(running)} rounds had processes running once all was recorded")
    assert early == []
    assert running == []
    assert ran >= 8  # nearly every cancel came after the calls had started
    assert ended == ["cancelled"] * len(names) * ran  # and each host's call was watched


def _round_records(audit: Path, n: int) -> tuple[set[str], set[str]]:
    """The calls of round `n` that have a start record, and those that have an end record."""
    records = [json.loads(line) for line in audit.read_text().splitlines()] \
        if audit.exists() else []
    starts = {r["call"] for r in records if r["event"] == "start"
              and r.get("parameters") == {"n": n}}
    return starts, {r["call"] for r in records if r["event"] == "end" and r["call"] in starts}
