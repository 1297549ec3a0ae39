"""The embedded SSH target behind `tailnet-agent demo`.

An asyncssh server on 127.0.0.1 with a fresh host key (pinned in a private
known_hosts) that accepts one fresh client key and runs each exec request with
/bin/sh as the current user. The agent talks to it exactly as it talks to a
real server, so the demo exercises the real SSH path: host-key check, POSIX
shell probe, timeouts, output caps. It offers no interactive shell.
"""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import os
import signal
from dataclasses import dataclass
from pathlib import Path

import asyncssh

from .config import HostConfig


@dataclass(frozen=True)
class DemoTarget:
    host: HostConfig
    server: asyncssh.SSHAcceptor

    def close(self) -> None:
        self.server.close()


async def _pump(reader: asyncio.StreamReader, writer: asyncssh.SSHWriter[bytes]) -> None:
    while chunk := await reader.read(65536):
        writer.write(chunk)
        await writer.drain()


async def _run_locally(process: asyncssh.SSHServerProcess[bytes]) -> None:
    command = process.command
    if not command:
        process.stderr.write(b"this demo target runs commands only; no interactive shell\n")
        process.exit(1)
        return
    local = await asyncio.create_subprocess_exec(
        "/bin/sh", "-c", command,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        start_new_session=True,  # its own process group, so a dropped channel kills it all
    )
    assert local.stdout is not None and local.stderr is not None
    try:
        await asyncio.gather(
            _pump(local.stdout, process.stdout), _pump(local.stderr, process.stderr)
        )
        status = await local.wait()
        process.exit(status if status >= 0 else 128 - status)
    except (asyncssh.Error, ConnectionError, asyncio.CancelledError):
        # The client went away (timeout, output cap): do not leave the command running.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(local.pid, signal.SIGKILL)
        await local.wait()
        raise


async def start_demo_target(workdir: Path) -> DemoTarget:
    """Start the target; its key files go into `workdir`, an existing private (0700) directory."""
    host_key = asyncssh.generate_private_key("ssh-ed25519")
    client_key = asyncssh.generate_private_key("ssh-ed25519")
    key_path = workdir / "demo_client_key"
    client_key.write_private_key(str(key_path))
    key_path.chmod(0o600)

    server = await asyncssh.create_server(
        asyncssh.SSHServer,
        "127.0.0.1",
        0,
        server_host_keys=[host_key],
        authorized_client_keys=asyncssh.import_authorized_keys(
            client_key.export_public_key().decode()
        ),
        process_factory=_run_locally,
        encoding=None,
        allow_scp=False,
        agent_forwarding=False,
        x11_forwarding=False,
        line_editor=False,
    )
    port = server.sockets[0].getsockname()[1]
    known_hosts = workdir / "known_hosts"
    known_hosts.write_text(f"[127.0.0.1]:{port} {host_key.export_public_key().decode()}")
    known_hosts.chmod(0o600)
    host = HostConfig(
        name="demo",
        address="127.0.0.1",
        user=getpass.getuser(),
        port=port,
        key_path=key_path,
        known_hosts=known_hosts,
    )
    return DemoTarget(host=host, server=server)
