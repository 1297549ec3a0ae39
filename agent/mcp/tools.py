"""The MCP tools, served with the official SDK's `MCPServer`.

Tools are thin: they find the caller's identity, hand the work to `AgentService`
(execute_command and run_on_hosts get their call prepared by their resolvers,
agent/mcp/confirm.py; a cancel reaches the service once, agent/mcp/cancel.py) and let its
exceptions through: AgentMCPServer.call_tool maps them to tool errors in one place
(agent/mcp/errors.py). Nothing here builds a command string.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Annotated, Any, Literal

from mcp.server.elicitation import ElicitationResult
from mcp.server.mcpserver import Context, MCPServer, Resolve
from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import CallToolResult, ToolAnnotations
from pydantic import Field

from agent import __version__
from agent.access.identity import Identity
from agent.core.fanout_run import FanoutPlan
from agent.core.prepare import Preparation, PreparedCall
from agent.core.service import AgentService
from agent.fanout.row_filter import MAX_LENGTH
from agent.hosts.query import DEFAULT_LIMIT, MAX_LIMIT, MAX_PATTERN, HostQuery
from agent.output.store import MAX_PAGE
from whitelist.errors import shown

from .cancel import settled
from .confirm import (
    ask_confirmation,
    ask_fanout_confirmation,
    confirmation_check,
    fanout_plan,
    prepared_call,
)
from .context import AgentMCPServer, caller
from .models import (
    CommandList,
    Confirm,
    FanoutToolResult,
    HostList,
    OutputPage,
    Overview,
    Pong,
    ToolResult,
    command_info,
    fanout_call_result,
)
from .progress import FanoutProgress, live_progress
from .prompts import register_prompts
from .resources import register_resources

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
        if name in ("execute_command", "read_output", "run_on_hosts") and not visible:
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

CommandArg = Annotated[str, Field(description="Catalog command name, from list_commands.")]

FILTER_HELP = (
    "Only for a command with a parser: keep the hosts where at least one row of the parsed "
    "output makes this JMESPath condition true (what goes inside [? ]), e.g. "
    "use_percent >= `90` on disk_usage. Numbers in backticks, text in single quotes "
    "(mounted_on == '/'), && || ! and JMESPath functions (starts_with(unit, 'nginx')); "
    "fields as list_commands names them. Hosts that match are listed with the rows that "
    "matched, the others only counted; hosts that failed or whose output could not be "
    "parsed are listed with why.")

READ_ONLY = ToolAnnotations(read_only_hint=True, destructive_hint=False, idempotent_hint=True,
                            open_world_hint=False)


def list_hosts_again(query: HostQuery) -> Callable[[str], str]:
    """How the next page is asked for (host_query.page_note): the same filters, a cursor."""
    kept = {"tag": query.tag, "name": query.name,
            "online": None if query.online is None else str(query.online).lower(),
            "limit": None if query.limit == DEFAULT_LIMIT else query.limit}

    def again(cursor: str) -> str:
        args = [f"cursor={cursor!r}", *(f"{k}={v!r}" if isinstance(v, str) and k != "online"
                                        else f"{k}={v}" for k, v in kept.items()
                                        if v is not None)]
        return f"call list_hosts with {', '.join(args)}"

    return again


def build_mcp_server(service: AgentService, *, stdio_caller: Identity | None = None) -> MCPServer:
    """The MCP server over `service`; `stdio_caller` is who every call is from over stdio
    (elsewhere calls without an HTTP request or a chat token are refused)."""
    mcp = AgentMCPServer(
        "tailnet-agent",
        service,
        stdio_caller=stdio_caller,
        version=__version__,
        instructions=(
            "Operate Linux servers read-mostly through a whitelist of named commands. "
            "Use list_commands to see what can run and list_hosts for targets; "
            "run_on_hosts runs one command on many hosts at once. "
            "There is no shell access: only catalog commands with validated parameters."
        ),
    )
    register_resources(mcp)
    register_prompts(mcp, service)

    async def run(ctx: Context, tool: str, call: Preparation,
                  confirmation: ElicitationResult[Confirm] | None = None) -> ToolResult:
        name = call.command.name if isinstance(call, PreparedCall) else call.command
        async with live_progress(ctx) as live:
            result = await settled(service.execute(
                call, confirm=confirmation_check(name, confirmation), tool=tool, live=live))
        if result.exit_status in (126, 127):
            raise ToolError(
                f"'{name}' could not run on host '{result.host}': the program is missing or not "
                f"executable there (exit status {result.exit_status}): {result.stderr.strip()}"
            )
        return ToolResult.of(result)

    def prepared(ctx: Context, name: str, arguments: dict[str, Any],
                 host: str | None) -> Preparation:
        return service.prepare(name, arguments, host=host, identity=caller(ctx))

    @mcp.tool(annotations=READ_ONLY)
    async def ping(ctx: Context) -> Pong:
        """Check that the agent answers, and see who it thinks you are."""
        return Pong(pong=True, version=__version__, identity=caller(ctx).display)

    @mcp.tool(annotations=READ_ONLY)
    async def server_status(ctx: Context) -> dict[str, Any]:
        """The agent's own state: mode, tailnet state, SSH connections per host."""
        # Only what this caller may use: their hosts, their commands, no policy path.
        return await service.status(caller(ctx))

    @mcp.tool(annotations=READ_ONLY)
    async def list_commands(
        ctx: Context,
        category: Annotated[
            str | None, Field(description="Only this category (e.g. Disk, Memory); omit for all.")
        ] = None,
        host: Annotated[
            str | None, Field(description="Only what applies on this host and you may run there.")
        ] = None,
    ) -> CommandList:
        """List the whitelisted commands you may run, their categories and typed parameters."""
        identity = caller(ctx)
        known = sorted({c.category for c in service.visible_commands(identity)})
        commands = service.visible_commands(identity, category, host)
        if category and not commands:
            raise ToolError(f"unknown category {shown(category)} (or nothing in it that you may "
                            f"run); categories you can use: {', '.join(known) or 'none'}")
        return CommandList(commands=[command_info(c, service.runs_as(c)) for c in commands],
                           categories=known)

    has_destructive = any(c.destructive for c in service.catalog)
    # The tools that run any catalog command: destructive ones too, if the catalog has any.
    runs_commands = ToolAnnotations(read_only_hint=not has_destructive,
                                    destructive_hint=has_destructive, open_world_hint=False)

    @mcp.tool(annotations=runs_commands)
    async def execute_command(
        ctx: Context,
        command: CommandArg,
        parameters: Annotated[
            dict[str, Any] | None,
            Field(description="Values for the command's parameters, by name (see list_commands)."),
        ] = None,
        host: HostArg = None,
        prepared: Annotated[Preparation, Resolve(prepared_call)] = None,  # type: ignore[assignment]
        confirmation: Annotated[
            ElicitationResult[Confirm], Resolve(ask_confirmation)
        ] = None,  # type: ignore[assignment]
    ) -> ToolResult:
        """Run one whitelisted catalog command by name with typed, validated parameters."""
        return await run(ctx, "execute_command", prepared, confirmation)

    @mcp.tool(annotations=READ_ONLY)
    async def check_disk(ctx: Context, host: HostArg = None) -> ToolResult:
        """Filesystem usage (df -hP): size, used, available and use% per mount, also as rows."""
        return await run(ctx, "check_disk", prepared(ctx, "disk_usage", {}, host))

    @mcp.tool(annotations=READ_ONLY)
    async def check_memory(ctx: Context, host: HostArg = None) -> ToolResult:
        """Memory and swap usage (free -h)."""
        return await run(ctx, "check_memory", prepared(ctx, "memory_usage", {}, host))

    @mcp.tool(annotations=READ_ONLY)
    async def check_service(
        ctx: Context,
        unit: Annotated[str, Field(description="systemd unit name, e.g. nginx or nginx.service")],
        host: HostArg = None,
    ) -> ToolResult:
        """Status of one systemd service (systemctl status)."""
        return await run(ctx, "check_service",
                         prepared(ctx, "service_status", {"unit": unit}, host))

    @mcp.tool(annotations=READ_ONLY)
    async def check_path_size(
        ctx: Context,
        path: Annotated[str, Field(description="Absolute path of a file or directory")],
        host: HostArg = None,
    ) -> ToolResult:
        """Total size of a file or directory (du -sh)."""
        return await run(ctx, "check_path_size",
                         prepared(ctx, "disk_usage_path", {"path": path}, host))

    @mcp.tool(annotations=READ_ONLY)
    async def system_overview(ctx: Context, host: HostArg = None) -> Overview:
        """Hostname, uptime, kernel, disk, memory and process count, gathered concurrently."""
        results = await settled(service.run_many(
            OVERVIEW_COMMANDS, host=host, identity=caller(ctx), tool="system_overview"))
        return Overview(host=results[0].host, results=[ToolResult.of(r) for r in results])

    @mcp.tool(annotations=runs_commands)
    async def run_on_hosts(
        ctx: Context,
        command: CommandArg,
        hosts: Annotated[
            list[str] | str,
            Field(description="Hosts from list_hosts: names, globs like web-*, tag:<name> "
                  "(hosts with that tailnet tag) or all."),
        ],
        parameters: Annotated[
            dict[str, Any] | None,
            Field(description="Values for the command's parameters, the same on every host."),
        ] = None,
        filter: Annotated[
            str | None,
            Field(description=FILTER_HELP, max_length=MAX_LENGTH),
        ] = None,
        strategy: Annotated[
            Literal["parallel", "canary", "rolling"] | None,
            Field(description="parallel: every host at once (up to the agent's bound); "
                  "canary: one host first, the rest only if it succeeded; rolling: batches "
                  "of batch_size, stopping once more than max_failures hosts failed. "
                  "Default: canary for destructive commands, else parallel."),
        ] = None,
        batch_size: Annotated[int | None, Field(
            description="rolling: hosts per batch (default: a tenth of the hosts)",
            ge=1, le=100_000)] = None,
        max_failures: Annotated[int | None, Field(
            description="rolling: failed hosts tolerated before the rest are skipped "
            "(default 0)", ge=0, le=100_000)] = None,
        plan: Annotated[FanoutPlan, Resolve(fanout_plan)] = None,  # type: ignore[assignment]
        confirmation: Annotated[
            ElicitationResult[Confirm], Resolve(ask_fanout_confirmation)
        ] = None,  # type: ignore[assignment]
    ) -> Annotated[CallToolResult, FanoutToolResult]:
        """Run one whitelisted command with one set of parameters on many hosts at once.

        Every host is checked and recorded like a single call. The result groups hosts
        with identical outcomes (one copy of the output each, hosts compacted like
        web-[001-180]), lists the others on their own, and stays small whatever the
        number of hosts; what does not fit is behind `listing` (read_output). Progress is
        reported as hosts finish, naming the batch. A command with a parser (list_commands
        shows its fields) also gives each host's output as data; with `filter`, only the
        hosts with a row matching it are listed (grouped, with the rows that matched
        instead of their text), the others counted: to answer "which hosts have a disk
        over 90 % full?", run disk_usage on all with the filter use_percent >= `90`."""

        result = await settled(service.execute_fanout(
            plan, confirm=confirmation_check(command, confirmation),
            progress=FanoutProgress(ctx)))
        return fanout_call_result(result)

    @mcp.tool(annotations=READ_ONLY)
    async def read_output(
        ctx: Context,
        handle: Annotated[str, Field(description="output_handle from a command's result",
                                     max_length=100)],
        offset: Annotated[int, Field(description="Byte offset to start at (the result's note "
                                     "or the previous page's next_offset)", ge=0)] = 0,
        max_bytes: Annotated[int, Field(description="Bytes to read, at most 262144",
                                        ge=1, le=MAX_PAGE)] = 65536,
        stream: Annotated[Literal["stdout", "stderr"], Field(
            description="Which stream")] = "stdout",
    ) -> OutputPage:
        """Read more of a long command output by its handle: a page of whole lines, secrets
        redacted. Handles belong to whoever ran the command and expire; each page counts
        against your rate limit like a call."""
        identity = caller(ctx)
        page = await service.read_output(identity, handle, offset=offset,
                                         max_bytes=max_bytes, stream=stream)
        return OutputPage(**dataclasses.asdict(page))

    @mcp.tool(annotations=READ_ONLY)
    async def list_hosts(
        ctx: Context,
        tag: Annotated[str | None, Field(
            description="Only hosts with this tailnet tag (web or tag:web)",
            max_length=MAX_PATTERN)] = None,
        online: Annotated[bool | None, Field(
            description="true: only hosts online in the tailnet; false: only offline ones")
        ] = None,
        name: Annotated[str | None, Field(
            description="Only hosts whose name matches: a glob like web-* or part of the name",
            max_length=MAX_PATTERN)] = None,
        cursor: Annotated[str | None, Field(
            description="next_cursor of the previous page (with the same filters)",
            max_length=MAX_PATTERN)] = None,
        limit: Annotated[int, Field(description=f"Hosts per page, at most {MAX_LIMIT}",
                                    ge=1, le=MAX_LIMIT)] = DEFAULT_LIMIT,
    ) -> Annotated[CallToolResult, HostList]:
        """The SSH hosts you may run commands on, a page at a time in name order, with how
        many match, how many are online, their tailnet tags and the default host. Filter by
        tag, online state or name. run_on_hosts takes tag:<name>, globs and all itself."""
        query = HostQuery(tag=tag, online=online, name=name, cursor=cursor, limit=limit)
        page = service.host_page(caller(ctx), query)
        return HostList.of(page, query, list_hosts_again(query)).call_result()

    return mcp
