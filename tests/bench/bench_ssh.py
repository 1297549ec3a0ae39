"""SSH figures with no MCP in front: the floors and what other tools do per command."""

from __future__ import annotations

import contextlib
import secrets
import subprocess
import time
from collections.abc import Awaitable, Callable

import asyncssh

from tests.support.sshd import Sshd

Call = Callable[[], Awaitable[object]]


async def connect(sshd: Sshd) -> asyncssh.SSHClientConnection:
    return await asyncssh.connect(
        sshd.address, sshd.port, username=sshd.user, known_hosts=str(sshd.known_hosts),
        client_keys=[str(sshd.client_key)], config=None, agent_path=None,
    )


async def raw_exec(stack: contextlib.AsyncExitStack, sshd: Sshd) -> Call:
    """asyncssh exec of `hostname` on a connection that is already open."""
    conn = await connect(sshd)
    stack.callback(conn.close)
    return lambda: conn.run("hostname", check=True)


async def raw_shell(stack: contextlib.AsyncExitStack, sshd: Sshd, command: str) -> Call:
    """`command` on a persistent /bin/sh channel: end marker on both streams, nothing else."""
    conn = await connect(sshd)
    stack.callback(conn.close)
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

    return one


async def new_connection_per_command(sshd: Sshd, n: int) -> list[float]:
    """The seed's way: connect, run, close, every time."""
    out = []
    for i in range(n + 1):
        started = time.perf_counter()
        conn = await connect(sshd)
        try:
            await conn.run("hostname", check=True)
        finally:
            conn.close()
            await conn.wait_closed()
        if i:  # the first one loads keys and warms caches
            out.append(time.perf_counter() - started)
    return out


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
