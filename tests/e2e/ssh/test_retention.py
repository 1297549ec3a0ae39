"""Idle SSH connections close, and at most a set number are open (agent/ssh/retention.py),
against one real sshd answering on distinct loopback addresses as distinct hosts.

What sshd sees is read from the kernel (`ss`, Sshd.connected_addresses): the TCP
connections open to it, by the address each one reached, so "closed" means closed at the
server, not only in our pool.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from agent.hosts.inventory import HostConfig
from agent.output.results import CommandResult
from agent.ssh import SSHPool
from agent.ssh.errors import ConnectionCapReached
from tests.support.sshd import Sshd
from tests.support.waiting import wait_until

MiB = 1024 * 1024


@pytest.fixture(scope="module")
def server() -> Iterator[Sshd]:
    """One sshd on every address: 127.0.1.1, 127.0.1.2, ... are distinct hosts to it."""
    sshd = Sshd(listen=("0.0.0.0",))
    sshd.start()
    yield sshd
    sshd.cleanup()


@contextlib.asynccontextmanager
async def pool_on(server: Sshd, n: int, folder: Path, **options: Any
                  ) -> AsyncIterator[tuple[dict[str, HostConfig], SSHPool]]:
    """`n` hosts of `server` and a pool over them (SSHPool's `options`), closed after."""
    hosts = server.loopback_hosts(n, folder)
    pool = SSHPool(hosts, **options)
    try:
        yield hosts, pool
    finally:
        await pool.close()


def addresses(hosts: dict[str, HostConfig], *names: str) -> set[str]:
    return {hosts[n].address for n in names}


async def connected(pool: SSHPool) -> set[str]:
    return {name for name, s in (await pool.connection_status()).items() if s["connected"]}


async def run(pool: SSHPool, host: str, command: str) -> CommandResult:
    return await pool.run(host, command, command_name="test", timeout=30, max_output=MiB)


async def test_idle_connections_close_at_the_server_and_the_next_call_reconnects(
        server: Sshd, tmp_path: Path) -> None:
    async with pool_on(server, 3, tmp_path, idle_timeout=0.5) as (hosts, pool):
        results = await asyncio.gather(*(run(pool, h, "echo $SSH_CONNECTION") for h in hosts))
        # Distinct hosts: each session reached its own address.
        assert {r.stdout.split()[2] for r in results} == addresses(hosts, "h1", "h2", "h3")
        assert await connected(pool) == {"h1", "h2", "h3"}
        assert server.connected_addresses() >= addresses(hosts, "h1", "h2", "h3")

        await wait_until(lambda: not (server.connected_addresses() & addresses(hosts, *hosts)),
                         what="the server sees the idle connections closed")
        assert await connected(pool) == set()
        assert pool.connections()["closed_idle"] == 3
        assert pool.connections()["open"] == 0

        again = await run(pool, "h2", "echo back")
        assert again.stdout == "back\n"
        status = await pool.connection_status()
        assert status["h2"]["connects"] == 2 and status["h1"]["connects"] == 1


async def test_a_running_command_keeps_its_connection_and_idle_time_starts_when_it_ends(
        server: Sshd, tmp_path: Path) -> None:
    async with pool_on(server, 2, tmp_path, idle_timeout=1.0) as (hosts, pool):
        running = asyncio.create_task(run(pool, "h1", "sleep 3; echo done"))
        await run(pool, "h2", "true")
        # h2 closes after its idle second while h1's command, older, still runs.
        await wait_until(lambda: hosts["h2"].address not in server.connected_addresses(),
                         what="h2 closed idle")
        assert not running.done()
        assert hosts["h1"].address in server.connected_addresses()
        result = await running
        assert (result.stdout, result.exit_status) == ("done\n", 0)
        ended = time.monotonic()
        assert "h1" in await connected(pool)  # its idle second starts now
        await wait_until(lambda: hosts["h1"].address not in server.connected_addresses(),
                         what="h1 closed idle after its command")
        assert time.monotonic() - ended >= 0.9


async def test_at_the_cap_the_least_recently_used_connection_closes(
        server: Sshd, tmp_path: Path) -> None:
    async with pool_on(server, 3, tmp_path, max_connections=2) as (hosts, pool):
        for host in ("h1", "h2", "h1"):  # h2 is now the least recently used
            await run(pool, host, "true")
        assert (await run(pool, "h3", "echo three")).stdout == "three\n"
        assert await connected(pool) == {"h1", "h3"}
        await wait_until(lambda: addresses(hosts, *hosts) & server.connected_addresses()
                         == addresses(hosts, "h1", "h3"), what="h2 closed at the server")
        assert pool.connections() == {
            "open": 2, "cap": 2, "idle_close_seconds": 600.0, "closed_idle": 0,
            "closed_for_cap": 1, "refused_at_cap": 0}


async def test_at_the_cap_a_call_waits_for_a_busy_connection_to_finish_never_cutting_it(
        server: Sshd, tmp_path: Path) -> None:
    async with pool_on(server, 3, tmp_path, max_connections=2, connect_timeout=20) as (hosts, pool):
        ends: dict[str, float] = {}

        async def timed(host: str, command: str) -> CommandResult:
            result = await run(pool, host, command)
            ends[host] = time.monotonic()
            return result

        first = asyncio.create_task(timed("h1", "sleep 1.5; echo one"))
        second = asyncio.create_task(timed("h2", "sleep 5; echo two"))
        await wait_until(lambda: addresses(hosts, "h1", "h2") <= server.connected_addresses())
        third = await timed("h3", "echo three")  # both connections busy: it waits
        assert third.stdout == "three\n"
        assert (await first).stdout == "one\n" and (await second).stdout == "two\n"
        assert (await first).exit_status == 0 and (await second).exit_status == 0
        assert ends["h1"] <= ends["h3"] < ends["h2"]  # it took h1's place once h1 was done
        assert pool.connections()["closed_for_cap"] == 1
        assert await connected(pool) == {"h2", "h3"}


async def test_at_the_cap_a_call_is_refused_after_waiting_and_nothing_reaches_its_host(
        server: Sshd, tmp_path: Path) -> None:
    async with pool_on(server, 2, tmp_path, max_connections=1, connect_timeout=1) as (hosts, pool):
        busy = asyncio.create_task(run(pool, "h1", "sleep 4; echo kept"))
        await wait_until(lambda: hosts["h1"].address in server.connected_addresses())
        started = time.monotonic()
        with pytest.raises(ConnectionCapReached) as refused:
            await run(pool, "h2", "echo never")
        waited = time.monotonic() - started
        assert 0.9 <= waited < 3.5
        assert "nothing was sent to h2" in str(refused.value)
        assert "1 SSH connections open (TAILNET_AGENT_SSH_MAX_CONNECTIONS)" in str(refused.value)
        assert hosts["h2"].address not in server.connected_addresses()
        assert (await pool.connection_status())["h2"]["connects"] == 0
        assert (await busy).stdout == "kept\n"  # the busy connection was never cut
        assert pool.connections()["refused_at_cap"] == 1
        # Once h1's call is over, its connection makes room.
        assert (await run(pool, "h2", "echo now")).stdout == "now\n"


async def test_a_host_that_left_counts_until_its_command_finished(
        server: Sshd, tmp_path: Path) -> None:
    hosts = server.loopback_hosts(2, tmp_path)
    live = dict(hosts)
    pool = SSHPool(live, max_connections=1, connect_timeout=20)
    try:
        leaving = asyncio.create_task(run(pool, "h1", "sleep 1.5; echo finished"))
        await wait_until(lambda: hosts["h1"].address in server.connected_addresses())
        del live["h1"]
        pool.prune()  # h1 left the tailnet mid-command
        other = await run(pool, "h2", "echo two")  # waits for h1's command and connection
        result = await leaving
        assert (result.stdout, result.exit_status) == ("finished\n", 0)
        assert other.stdout == "two\n"
        assert pool.connections()["open"] == 1
        await wait_until(lambda: hosts["h1"].address not in server.connected_addresses())
    finally:
        await pool.close()
