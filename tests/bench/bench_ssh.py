"""SSH figures with no MCP in front: the floors and what other tools do per command."""

from __future__ import annotations

import secrets
import subprocess
import time
from collections.abc import Awaitable, Callable

import asyncssh

from tests.support.sshd import Sshd

Timed = Callable[[], Awaitable[object]]


async def samples(call: Timed, n: int, warmup: int = 3) -> list[float]:
    for _ in range(warmup):
        await call()
    out = []
    for _ in range(n):
        started = time.perf_counter()
        await call()
        out.append(time.perf_counter() - started)
    return out


async def connect(sshd: Sshd) -> asyncssh.SSHClientConnection:
    return await asyncssh.connect(
        sshd.address, sshd.port, username=sshd.user, known_hosts=str(sshd.known_hosts),
        client_keys=[str(sshd.client_key)], config=None, agent_path=None,
    )


async def raw_exec_warm(sshd: Sshd, n: int) -> list[float]:
    """asyncssh exec of `hostname` on a connection that is already open."""
    conn = await connect(sshd)
    try:
        return await samples(lambda: conn.run("hostname", check=True), n)
    finally:
        conn.close()


async def raw_shell(sshd: Sshd, n: int, command: str = "hostname") -> list[float]:
    """`command` on a persistent /bin/sh channel: end marker on both streams, nothing else."""
    conn = await connect(sshd)
    try:
        writer, reader, errors = await conn.open_session("exec /bin/sh", encoding=None)

        async def one() -> None:
            token = secrets.token_hex(16)
            writer.write(f"{command}; s=$?; echo E{token} $s >&2; echo E{token} $s\n".encode())
            end = f"E{token}".encode()
            out = err = b""
            while end not in out:
                out += await reader.read(65536)
            while end not in err:
                err += await errors.read(65536)

        return await samples(one, n)
    finally:
        conn.close()


async def new_connection_per_command(sshd: Sshd, n: int) -> list[float]:
    """The seed's way: connect, run, close, every time."""

    async def one() -> None:
        conn = await connect(sshd)
        try:
            await conn.run("hostname", check=True)
        finally:
            conn.close()
            await conn.wait_closed()

    return await samples(one, n, warmup=1)


def openssh_per_call(sshd: Sshd, n: int) -> list[float]:
    argv = ["ssh", "-i", str(sshd.client_key), "-p", str(sshd.port),
            "-o", f"UserKnownHostsFile={sshd.known_hosts}", "-o", "StrictHostKeyChecking=yes",
            "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes", "-F", "/dev/null",
            f"{sshd.user}@{sshd.address}", "hostname"]
    out = []
    for i in range(n + 1):
        started = time.perf_counter()
        subprocess.run(argv, check=True, capture_output=True, stdin=subprocess.DEVNULL)
        if i:  # the first one warms the page cache
            out.append(time.perf_counter() - started)
    return out
