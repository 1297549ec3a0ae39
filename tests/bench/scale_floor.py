"""The SSH layer alone, the floor of a fan-out: N asyncssh connections at its concurrency.

What any client must do to run one command on N hosts it has no connection to yet: open
N connections (key exchange, host key checked against known_hosts, public-key login) and
run the command on each, at the same concurrency as the agent's fan-out, with the client
key and known_hosts read once (the cheapest a client can do), and the same ciphers the
agent prefers. Every connection stays open until the last is done, as the agent keeps
its own. Then, the warm floor: the command once more on each open connection.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import asyncssh

from agent.ssh.connect import ENCRYPTION_ALGS
from agent.ssh.dial import Connector


@dataclass(frozen=True)
class Floor:
    seconds: float  # N connections (and the command on each)
    cpu: float  # this process's CPU seconds for it
    warm: float | None = None  # the command once more on every open connection


def _cpu() -> float:
    times = os.times()
    return times.user + times.system


async def ssh_floor(targets: Sequence[tuple[str, int]], *, user: str, key: Path,
                    known_hosts: Path, concurrency: int, command: str | None,
                    connector: Connector | None = None) -> Floor:
    """`targets` are (address, port), dialled through `connector` when given (SOCKS5)."""
    client_key = asyncssh.read_private_key(key)
    trusted = asyncssh.import_known_hosts(known_hosts.read_text())
    limit = asyncio.Semaphore(concurrency)
    conns: list[asyncssh.SSHClientConnection] = []

    async def one(address: str, port: int) -> None:
        async with limit:
            sock = None if connector is None else await connector(address, port)
            conn = await asyncssh.connect(
                address, port, sock=sock, username=user, client_keys=[client_key],
                known_hosts=trusted, agent_path=None, config=None, password=None,
                kbdint_auth=False, encryption_algs=ENCRYPTION_ALGS)
            conns.append(conn)
            if command is not None:
                await conn.run(command, check=True)

    async def again(conn: asyncssh.SSHClientConnection) -> None:
        async with limit:
            await conn.run(command, check=True)

    cpu_before, started = _cpu(), time.perf_counter()
    try:
        await asyncio.gather(*(one(*target) for target in targets))
        floor = Floor(time.perf_counter() - started, _cpu() - cpu_before)
        if command is None:
            return floor
        started = time.perf_counter()
        await asyncio.gather(*(again(c) for c in conns))
        return Floor(floor.seconds, floor.cpu, time.perf_counter() - started)
    finally:
        for conn in conns:
            conn.close()
        await asyncio.gather(*(c.wait_closed() for c in conns), return_exceptions=True)
