"""The MCP tools, served with the official SDK's `MCPServer`.

Tools are thin: they find the caller's identity, hand the work to
`AgentService`, and turn our exceptions into tool errors (`isError`) whose text
says what is allowed. Nothing here builds a command string.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from mcp.server.elicitation import (
    AcceptedElicitation,
    CancelledElicitation,
    DeclinedElicitation,
    ElicitationResult,
)
from mcp.server.mcpserver import Context, Elicit, MCPServer, Resolve
from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import ToolAnnotations
from pydantic import BaseModel, Field

from whitelist import Command, WhitelistError

from . import __version__
from .config import ConfigError
from .identity import Identity, local_user_identity, request_identity
from .policy import CallRefused
from .results import CommandResult
from .service import AgentService
from .ssh import SSHError

log = logging.getLogger(__name__)

IDENTITY_META_KEY = "tailnet-agent/identity"

OVERVIEW_COMMANDS = ("hostname", "uptime", "uname", "disk_usage", "memory_usage", "process_count")

# The catalog commands behind each tool, so a caller's tool list can leave out
# tools the policy gives them nothing to do with (execute_command: any command).
TOOL_COMMANDS: dict[str, tuple[str, ...]] = {
    "check_disk": ("disk_usage",),
    "check_memory": ("memory_usage",),
    "check_service": ("service_status",),
    "check_path_size": ("disk_usage_path",),
    "system_overview": OVERVIEW_COMMANDS,
}


def tools_for(service: AgentService, identity: Identity, tool_names: list[str]) -> list[str]:
    """The tools worth offering this caller: those that can run something they may run."""
    visible = {c.name for c in service.visible_commands(identity)}
    kept: list[str] = []
    for name in tool_names:
        if name == "execute_command" and not visible:
            continue
        needs = TOOL_COMMANDS.get(name)
        if needs is not None and not set(needs) <= visible:
            continue
        kept.append(name)
    return kept


HostArg = Annotated[
    str | None,
    Field(description="Name of the target host from list_hosts; omit for the default host."),
]

READ_ONLY = ToolAnnotations(read_only_hint=True, destructive_hint=False, idempotent_hint=True,
                            open_world_hint=False)


class ToolResult(BaseModel):
    """The outcome of one whitelisted command on one host."""

    host: str
    command: str = Field(description="Catalog command name")
    rendered: str = Field(description="The exact command line that ran on the host")
    stdout: str
    stderr: str
    exit_status: int | None = Field(description="Exit status; null if the command was killed")
    duration_ms: float
    truncated: bool = Field(description="True if output was cut at the command's max_output")
    timed_out: bool = False

    @classmethod
    def of(cls, result: CommandResult) -> ToolResult:
        return cls.model_validate(result.to_dict())


class Overview(BaseModel):
    host: str
    results: list[ToolResult]


class ParameterInfo(BaseModel):
    name: str
    type: str
    description: str
    required: bool
    default: str | int | None = None
    choices: list[str] | None = None


class CommandInfo(BaseModel):
    name: str
    category: str
    description: str
    destructive: bool
    parameters: list[ParameterInfo]


class CommandList(BaseModel):
    commands: list[CommandInfo]
    categories: list[str]


class HostInfo(BaseModel):
    name: str
    address: str
    user: str
    port: int
    default: bool


class HostList(BaseModel):
    hosts: list[HostInfo]


class Pong(BaseModel):
    pong: bool
    version: str
    identity: str


class Confirm(BaseModel):
    confirm: bool = Field(description="Run this destructive command now?")


def command_info(command: Command) -> CommandInfo:
    return CommandInfo(
        name=command.name,
        category=command.category,
        description=command.description,
        destructive=command.destructive,
        parameters=[
            ParameterInfo(
                name=p.name,
                type=str(p.type),
                description=p.description,
                required=p.required,
                default=p.default,
                choices=list(p.choices) or None,
            )
            for p in command.parameters
        ],
    )


def caller(service: AgentService, ctx: Context) -> Identity:
    """The identity behind a tool call.

    Over HTTP it is what IdentityMiddleware resolved for the request. With no HTTP
    request (stdio, or the chat's in-process client) an identity token in `_meta`
    names the chat user; otherwise the caller is the local user who started us.
    """
    rc = ctx.request_context
    if rc.request is not None:
        return request_identity(rc.request)
    meta = rc.meta or {}
    if isinstance(meta, dict):
        token = meta.get(IDENTITY_META_KEY)
    else:
        token = getattr(meta, IDENTITY_META_KEY, None)
    return service.identity_tokens.resolve(token) or local_user_identity("local-operator")


NOT_ASKED = "not asked"

NO_ELICITATION = (
    "'{name}' is destructive and needs a confirmation, but this MCP client does not support "
    "elicitation. Run it from the agent's chat page, which asks for a confirmation click, or "
    "use a client that supports elicitation."
)


def supports_form_elicitation(ctx: Context) -> bool:
    capabilities = ctx.client_capabilities
    elicitation = capabilities.elicitation if capabilities is not None else None
    return elicitation is not None and (elicitation.form is not None or elicitation.url is None)


def confirmation_check(name: str, outcome: ElicitationResult[Confirm] | None) -> Callable[
        [], Awaitable[None]]:
    """The `confirm` step AgentService.run calls for a destructive command."""

    async def confirm() -> None:
        # A resolver that did not ask returns NOT_ASKED, which arrives as "accepted" data.
        if not isinstance(outcome, AcceptedElicitation) or not isinstance(outcome.data, Confirm):
            if isinstance(outcome, DeclinedElicitation | CancelledElicitation):
                raise ToolError(f"'{name}' was not confirmed, so it did not run.")
            raise ToolError(NO_ELICITATION.format(name=name))
        if not outcome.data.confirm:
            raise ToolError(f"'{name}' was not confirmed, so it did not run.")

    return confirm


async def ask_confirmation(
    command: str, ctx: Context, host: str | None = None
) -> Elicit[Confirm] | str:
    """Resolver for execute_command: ask a person before a destructive command runs.

    The SDK turns the `Elicit` into an elicitation request in the protocol the client
    speaks (mid-call on older protocols, an input-required round trip on newer ones).
    Nobody is asked about a command the policy would refuse anyway.
    """
    service = ctx.mcp_server.service  # type: ignore[attr-defined]
    assert isinstance(service, AgentService)
    found = service.catalog.commands.get(command)
    if found is None or not found.destructive or not supports_form_elicitation(ctx):
        return NOT_ASKED
    try:
        target = service.host(host)
    except ConfigError:
        return NOT_ASKED
    if not service.policy.decide(caller(service, ctx), found, target.name).allowed:
        return NOT_ASKED
    return Elicit(f"Run destructive command '{found.name}' on host '{target.name}'?", Confirm)


class AgentMCPServer(MCPServer):
    """The SDK server, plus the service its module-level resolvers reach through `ctx`."""

    service: AgentService


def build_mcp_server(service: AgentService) -> MCPServer:
    mcp = AgentMCPServer(
        "tailnet-agent",
        version=__version__,
        instructions=(
            "Operate Linux servers read-mostly through a whitelist of named commands. "
            "Use list_commands to see what can run and list_hosts for targets. "
            "There is no shell access: only catalog commands with validated parameters."
        ),
    )
    mcp.service = service

    async def run(
        ctx: Context,
        name: str,
        arguments: dict[str, Any],
        host: str | None,
        confirmation: ElicitationResult[Confirm] | None = None,
    ) -> ToolResult:
        identity = caller(service, ctx)
        confirm = confirmation_check(name, confirmation)
        try:
            result = await service.run(name, arguments, host=host, identity=identity,
                                       confirm=confirm)
        except (WhitelistError, ConfigError, SSHError, CallRefused) as exc:
            log.info("%s: %s refused: %s", identity.display, name, exc)
            raise ToolError(str(exc)) from exc
        if result.exit_status in (126, 127):
            raise ToolError(
                f"'{name}' could not run on host '{result.host}': the program is missing or not "
                f"executable there (exit status {result.exit_status}): {result.stderr.strip()}"
            )
        return ToolResult.of(result)

    @mcp.tool(annotations=READ_ONLY)
    async def ping(ctx: Context) -> Pong:
        """Check that the agent answers, and see who it thinks you are."""
        return Pong(pong=True, version=__version__, identity=caller(service, ctx).display)

    @mcp.tool(annotations=READ_ONLY)
    async def server_status(ctx: Context) -> dict[str, Any]:
        """The agent's own state: mode, tailnet state, SSH connections per host."""
        status = await service.status()
        # Only the hosts this caller may use: addresses and users are worth hiding.
        allowed = set(service.policy.hosts_for(caller(service, ctx), status["hosts"]))
        status["hosts"] = {k: v for k, v in status["hosts"].items() if k in allowed}
        return status

    @mcp.tool(annotations=READ_ONLY)
    async def list_commands(
        ctx: Context,
        category: Annotated[
            str | None, Field(description="Only this category (e.g. Disk, Memory); omit for all.")
        ] = None,
    ) -> CommandList:
        """List the whitelisted commands you may run, their categories and typed parameters."""
        identity = caller(service, ctx)
        visible = service.visible_commands(identity)
        known = sorted({c.category for c in visible})
        commands = [c for c in visible
                    if category is None or c.category.lower() == category.lower()]
        if category and not commands:
            raise ToolError(f"unknown category {category!r} (or nothing in it that you may "
                            f"run); categories you can use: {', '.join(known) or 'none'}")
        return CommandList(commands=[command_info(c) for c in commands], categories=known)

    has_destructive = any(c.destructive for c in service.catalog)

    @mcp.tool(
        annotations=ToolAnnotations(
            read_only_hint=not has_destructive,
            destructive_hint=has_destructive,
            open_world_hint=False,
        )
    )
    async def execute_command(
        ctx: Context,
        command: Annotated[str, Field(description="Catalog command name, from list_commands.")],
        parameters: Annotated[
            dict[str, Any] | None,
            Field(description="Values for the command's parameters, by name (see list_commands)."),
        ] = None,
        host: HostArg = None,
        confirmation: Annotated[
            ElicitationResult[Confirm], Resolve(ask_confirmation)
        ] = None,  # type: ignore[assignment]
    ) -> ToolResult:
        """Run one whitelisted catalog command by name with typed, validated parameters."""
        return await run(ctx, command, parameters or {}, host, confirmation)

    @mcp.tool(annotations=READ_ONLY)
    async def check_disk(ctx: Context, host: HostArg = None) -> ToolResult:
        """Filesystem usage (df -h): size, used, available and use% per mount."""
        return await run(ctx, "disk_usage", {}, host)

    @mcp.tool(annotations=READ_ONLY)
    async def check_memory(ctx: Context, host: HostArg = None) -> ToolResult:
        """Memory and swap usage (free -h)."""
        return await run(ctx, "memory_usage", {}, host)

    @mcp.tool(annotations=READ_ONLY)
    async def check_service(
        ctx: Context,
        unit: Annotated[str, Field(description="systemd unit name, e.g. nginx or nginx.service")],
        host: HostArg = None,
    ) -> ToolResult:
        """Status of one systemd service (systemctl status)."""
        return await run(ctx, "service_status", {"unit": unit}, host)

    @mcp.tool(annotations=READ_ONLY)
    async def check_path_size(
        ctx: Context,
        path: Annotated[str, Field(description="Absolute path of a file or directory")],
        host: HostArg = None,
    ) -> ToolResult:
        """Total size of a file or directory (du -sh)."""
        return await run(ctx, "disk_usage_path", {"path": path}, host)

    @mcp.tool(annotations=READ_ONLY)
    async def system_overview(ctx: Context, host: HostArg = None) -> Overview:
        """Hostname, uptime, kernel, disk, memory and process count, gathered concurrently."""
        identity = caller(service, ctx)
        try:
            results = await service.run_many(OVERVIEW_COMMANDS, host=host, identity=identity)
        except (WhitelistError, ConfigError, SSHError, CallRefused) as exc:
            raise ToolError(str(exc)) from exc
        return Overview(host=results[0].host, results=[ToolResult.of(r) for r in results])

    @mcp.tool(annotations=READ_ONLY)
    async def list_hosts(ctx: Context) -> HostList:
        """The SSH hosts you may run commands on, and which one is the default."""
        default = service.settings.default_host
        allowed = set(service.policy.hosts_for(caller(service, ctx), service.settings.hosts))
        return HostList(
            hosts=[
                HostInfo(name=h.name, address=h.address, user=h.user, port=h.port,
                         default=h.name == default)
                for h in service.settings.hosts.values() if h.name in allowed
            ]
        )

    return mcp
