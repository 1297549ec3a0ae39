"""`tailnet-agent demo`: the agent against an embedded SSH target on this machine.

The target is an asyncssh server on 127.0.0.1 with a fresh host key (pinned in a
private known_hosts) that accepts one fresh client key and runs each exec request
with /bin/sh as the current user, its stdin connected to the channel. The agent
talks to it exactly as it talks to a real server, so the demo exercises the real
SSH path: host-key check, POSIX shell probe, persistent shells (the fast path),
timeouts, output caps. It offers no interactive shell.

Everything the demo creates (the keys, known_hosts and, unless --audit-log says
otherwise, the audit log) lives in one private temporary directory that is removed
on every way out: Ctrl-C, SIGTERM, a port already in use.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import getpass
import os
import shutil
import signal
import tempfile
from dataclasses import dataclass
from pathlib import Path

import asyncssh

from agent.hosts.inventory import HostConfig
from agent.settings import Settings

from .serve import serve_local, sigterm_cancels


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


async def _feed(reader: asyncssh.SSHReader[bytes], writer: asyncio.StreamWriter) -> None:
    """The channel's input to the command (a persistent shell reads its calls from it)."""
    try:
        while chunk := await reader.read(65536):
            writer.write(chunk)
            await writer.drain()
    except (ConnectionError, asyncssh.Error):
        pass
    finally:
        with contextlib.suppress(Exception):
            writer.close()


async def _run_locally(process: asyncssh.SSHServerProcess[bytes]) -> None:
    command = process.command
    if not command:
        process.stderr.write(b"this demo target runs commands only; no interactive shell\n")
        process.exit(1)
        return
    local = await asyncio.create_subprocess_exec(
        "/bin/sh", "-c", command,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        start_new_session=True,  # its own process group, so a dropped channel kills it all
    )
    assert local.stdin is not None and local.stdout is not None and local.stderr is not None
    feeder = asyncio.create_task(_feed(process.stdin, local.stdin))
    try:
        await asyncio.gather(
            _pump(local.stdout, process.stdout), _pump(local.stderr, process.stderr)
        )
        status = await local.wait()
        feeder.cancel()
        process.exit(status if status >= 0 else 128 - status)
    except (asyncssh.Error, ConnectionError, asyncio.CancelledError):
        feeder.cancel()
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


async def run_demo(settings: Settings, *, port: int) -> None:
    """Start the target, point the agent at it and serve on 127.0.0.1 until stopped."""
    with sigterm_cancels():
        workdir = Path(tempfile.mkdtemp(prefix="tailnet-agent-demo-"))  # mode 0700
        target: DemoTarget | None = None
        try:
            target = await start_demo_target(workdir)
            demo_settings = dataclasses.replace(
                settings,
                hosts={"demo": target.host},
                default_host="demo",
                # A demo writes nothing to the real audit log unless asked to.
                audit_log=settings.audit_log or workdir / "audit.jsonl",
            )
            banner = [
                f"Demo SSH target: {target.host.user}@127.0.0.1:{target.host.port} (commands "
                "run on this machine as you; host key pinned in a private known_hosts)"
            ]
            await serve_local(demo_settings, port=port, mode="demo", banner=banner)
        except asyncio.CancelledError:
            pass  # SIGTERM before the server took over signals
        finally:
            if target is not None:
                target.close()
            shutil.rmtree(workdir, ignore_errors=True)
