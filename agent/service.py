"""The agent's one way to run a catalog command: resolve the host, render, execute, log.

Every front end (MCP over HTTP or stdio, the chat page, the palette) goes through
`AgentService.run`, so the checks cannot differ between them.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from whitelist import Catalog, Command, render

from .config import ConfigError, HostConfig, Settings
from .identity import Identity, IdentityTokens
from .results import CommandResult
from .ssh import SSHPool

log = logging.getLogger("tailnet_agent.calls")

StatusProvider = Callable[[], Awaitable[dict[str, Any]]]


class NoHostConfigured(ConfigError):
    pass


class AgentService:
    def __init__(
        self,
        settings: Settings,
        catalog: Catalog,
        pool: SSHPool,
        *,
        tailnet_status: StatusProvider | None = None,
        mode: str = "local",
    ) -> None:
        self.settings = settings
        self.catalog = catalog
        self.pool = pool
        self.identity_tokens = IdentityTokens()
        self.mode = mode
        self.tailnet_status = tailnet_status
        self.started = time.monotonic()

    def host(self, name: str | None) -> HostConfig:
        if not self.settings.hosts:
            raise NoHostConfigured(
                "no SSH host is configured: set REMOTE_HOST, REMOTE_USER and REMOTE_SSH_KEY_PATH "
                "(or TAILNET_AGENT_INVENTORY for several hosts), or try `tailnet-agent demo`"
            )
        return self.settings.host(name)

    async def run(
        self,
        command_name: str,
        arguments: Mapping[str, object],
        *,
        host: str | None,
        identity: Identity,
    ) -> CommandResult:
        """Render and run one catalog command. Raises WhitelistError / ConfigError / SSHError."""
        command = self.catalog.get(command_name)
        rendered = render(command, arguments)
        target = self.host(host)
        log.info("%s runs %s on %s: %s", identity.display, command.name, target.name, rendered)
        result = await self.pool.run(
            target.name,
            rendered,
            command_name=command.name,
            timeout=command.timeout,
            max_output=command.max_output,
            destructive=command.destructive,
        )
        log.info(
            "%s: %s on %s exited %s in %.0f ms%s",
            identity.display,
            command.name,
            target.name,
            result.exit_status,
            result.duration_ms,
            " (truncated)" if result.truncated else "",
        )
        return result

    async def run_many(
        self, command_names: Sequence[str], *, host: str | None, identity: Identity
    ) -> list[CommandResult]:
        """Run several parameterless commands concurrently on one host's connection."""
        return list(
            await asyncio.gather(
                *(self.run(name, {}, host=host, identity=identity) for name in command_names)
            )
        )

    def commands(self, category: str | None = None) -> list[Command]:
        wanted = category.lower() if category else None
        return [c for c in self.catalog if wanted is None or c.category.lower() == wanted]

    async def status(self) -> dict[str, Any]:
        tailnet = await self.tailnet_status() if self.tailnet_status else {"mode": self.mode}
        return {
            "mode": self.mode,
            "uptime_s": round(time.monotonic() - self.started, 1),
            "catalog_commands": len(self.catalog),
            "default_host": self.settings.default_host,
            "hosts": await self.pool.connection_status(),
            "tailnet": tailnet,
        }
