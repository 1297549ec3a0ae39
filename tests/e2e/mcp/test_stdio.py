"""`tailnet-agent mcp --stdio` with the official SDK's stdio client, on the real sshd."""

from __future__ import annotations

import sys

from mcp import Client, StdioServerParameters

from agent.hosts.inventory import HostConfig


async def test_stdio_server_lists_tools_and_runs_check_memory(ssh_host: HostConfig) -> None:
    params = StdioServerParameters(
        command=sys.executable,
        args=["-m", "agent.cli", "mcp", "--stdio", "--env-file", "/dev/null"],
        env={
            "PATH": "/usr/bin:/bin",
            "HOME": "/nonexistent",  # no ~/.ssh defaults: only what we configure here
            "REMOTE_HOST": ssh_host.address,
            "REMOTE_USER": ssh_host.user,
            "REMOTE_SSH_PORT": str(ssh_host.port),
            "REMOTE_SSH_KEY_PATH": str(ssh_host.key_path),
            "REMOTE_SSH_KNOWN_HOSTS": str(ssh_host.known_hosts),
        },
    )
    async with Client(params) as client:
        names = {t.name for t in (await client.list_tools()).tools}
        assert {"check_memory", "execute_command", "list_hosts"} <= names
        result = await client.call_tool("check_memory", {})
        assert not result.is_error, result.content
        assert "Mem:" in result.structured_content["stdout"]
        pong = await client.call_tool("ping", {})
        assert "local operator" in pong.structured_content["identity"]
