"""The MCP endpoint over Streamable HTTP, driven by the official SDK client, on the real sshd."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from mcp import Client

from agent.access.identity import local_user_identity
from agent.hosts.inventory import HostConfig
from tests.support.agents import RunningAgent, running_agent, settings_for
from whitelist.loader import default_catalog_path

EXPECTED_TOOLS = {
    "ping", "server_status", "list_commands", "execute_command", "check_disk", "check_memory",
    "check_service", "check_path_size", "system_overview", "list_hosts", "read_output",
    "run_on_hosts",
}

# Values for required parameters when every command is tried.
SAMPLE_ARGUMENTS = {"unit": "ssh.service", "container": "web", "path": "/etc/ssh"}


async def call(url: str, tool: str, arguments: dict[str, Any] | None = None) -> Any:
    async with Client(url) as client:
        return await client.call_tool(tool, arguments or {})


async def test_tools_are_listed_with_described_schemas_and_annotations(agent: RunningAgent) -> None:
    async with Client(agent.url) as client:
        tools = {t.name: t for t in (await client.list_tools()).tools}
    assert set(tools) == EXPECTED_TOOLS
    execute = tools["execute_command"].input_schema
    assert execute["required"] == ["command"]
    for name in ("command", "parameters", "host"):
        assert execute["properties"][name]["description"]
    assert tools["check_disk"].annotations is not None
    assert tools["check_disk"].annotations.read_only_hint is True
    assert tools["check_disk"].annotations.destructive_hint is False
    assert tools["check_disk"].output_schema is not None
    assert "rendered" in tools["check_disk"].output_schema["properties"]


async def test_check_disk_returns_real_df_output(agent: RunningAgent) -> None:
    result = await call(agent.url, "check_disk")
    assert not result.is_error, result.content
    out = result.structured_content
    assert out["exit_status"] == 0
    assert out["rendered"].startswith("df ")
    assert "Filesystem" in out["stdout"] and "%" in out["stdout"]
    assert out["host"] == "test" and out["duration_ms"] > 0 and out["truncated"] is False


async def test_every_default_command_runs_or_fails_cleanly(agent: RunningAgent) -> None:
    catalog = agent.service.catalog
    unavailable = []  # commands whose program/daemon is absent here (docker, systemd)
    async with Client(agent.url) as client:
        for command in catalog:
            # Paths default to "/", which a non-root test user cannot read all of.
            args = {p.name: SAMPLE_ARGUMENTS[p.type.value] for p in command.parameters
                    if p.required or p.type.value == "path"}
            result = await client.call_tool(
                "execute_command", {"command": command.name, "parameters": args}
            )
            needs_daemon = command.category in ("Docker", "Services")
            if result.is_error:
                text = result.content[0].text
                assert needs_daemon, f"{command.name} failed: {text}"
                assert "missing or not executable" in text
                unavailable.append(command.name)
                continue
            out = result.structured_content
            if needs_daemon and out["exit_status"] != 0:
                # e.g. "Cannot connect to the Docker daemon" / "System has not been booted
                # with systemd": a clean, explained failure, not a crash.
                assert out["stderr"].strip(), command.name
                unavailable.append(command.name)
                continue
            assert out["exit_status"] == 0, (command.name, out["stderr"])
            # Nobody is logged in on a test box; a loopback-only namespace has no routes.
            if command.name not in ("logged_in_users", "routing_table"):
                assert out["stdout"].strip(), command.name
    ran = len(catalog) - len(unavailable)
    assert ran >= 18, f"only {ran} commands ran; unavailable: {unavailable}"


@pytest.mark.parametrize(
    ("arguments", "expected"),
    [
        ({"command": "rm_everything"}, "only whitelisted commands can run"),
        ({"command": "largest_files", "parameters": {"path": "/tmp", "count": -5}}, "count"),
        ({"command": "largest_files", "parameters": {"path": "/tmp", "count": "ten"}}, "count"),
        ({"command": "disk_usage_path", "parameters": {"path": "--files0-from=/etc/shadow"}},
         "-"),
        ({"command": "disk_usage_path", "parameters": {"path": "/tmp\n/etc"}}, "path"),
        ({"command": "service_status", "parameters": {}}, "unit"),
        ({"command": "service_status", "parameters": {"unit": "ssh", "extra": 1}}, "extra"),
        ({"command": "hostname", "host": "nosuchhost"}, "nosuchhost"),
    ],
)
async def test_bad_input_is_a_tool_error_that_says_what_is_allowed(
    agent: RunningAgent, arguments: dict[str, Any], expected: str
) -> None:
    result = await call(agent.url, "execute_command", arguments)
    assert result.is_error
    text = result.content[0].text
    assert expected in text
    assert "Traceback" not in text


async def test_malformed_arguments_are_rejected_by_schema_not_a_crash(agent: RunningAgent) -> None:
    result = await call(agent.url, "execute_command", {"command": 42})
    assert result.is_error
    # the server still answers afterwards
    assert not (await call(agent.url, "ping")).is_error


async def test_list_commands_and_hosts(agent: RunningAgent) -> None:
    listed = (await call(agent.url, "list_commands", {"category": "Disk"})).structured_content
    assert {c["name"] for c in listed["commands"]} >= {"disk_usage", "disk_usage_path"}
    assert all(c["category"] == "Disk" for c in listed["commands"])
    hosts = (await call(agent.url, "list_hosts")).structured_content["hosts"]
    # Fields at their default (source file, online unknown, no tags, key login, the host
    # key from known_hosts...) are left out.
    assert hosts == [{"name": "test", "address": "127.0.0.1", "user": hosts[0]["user"],
                      "port": hosts[0]["port"], "default": True}]
    bad = await call(agent.url, "list_commands", {"category": "Nope"})
    assert bad.is_error and "Disk" in bad.content[0].text


async def test_a_custom_command_runs_by_name_through_execute_command_as_the_catalog_says(
    ssh_host: HostConfig, tmp_path: Path
) -> None:
    header = default_catalog_path().read_text().split("\ncommands:", 1)[0]
    # What the format says of a command's name, up to the next key.
    name_entry = header.split("<name>:", 1)[1].split("description:", 1)[0]
    assert "execute_command" in name_entry and "tool name" not in name_entry, name_entry
    catalog = tmp_path / "extra.yaml"
    catalog.write_text(
        "commands:\n  say_hello:\n    description: Print hello.\n    category: Demo\n"
        "    template: echo hello\n")
    settings = settings_for(ssh_host, audit_log=tmp_path / "audit.jsonl")
    async with running_agent(settings, catalogs=(catalog,)) as running, \
            Client(running.url) as client:
        tools = {t.name for t in (await client.list_tools()).tools}
        listed = (await client.call_tool("list_commands", {})).structured_content
        ran = await client.call_tool("execute_command", {"command": "say_hello"})
        as_tool = await client.call_tool("say_hello", {})
        fanned = await client.call_tool("run_on_hosts", {"command": "say_hello",
                                                          "hosts": [ssh_host.name]})
    assert "say_hello" not in tools and {"execute_command", "run_on_hosts"} <= tools
    assert "say_hello" in {c["name"] for c in listed["commands"]}
    assert not ran.is_error and ran.structured_content["stdout"] == "hello\n"
    assert not fanned.is_error, fanned.content
    # Called as a tool, it says how to call it.
    assert as_tool.is_error
    assert "execute_command (command: 'say_hello')" in as_tool.content[0].text


async def test_system_overview_gathers_all_members(agent: RunningAgent) -> None:
    out = (await call(agent.url, "system_overview")).structured_content
    assert [r["command"] for r in out["results"]] == [
        "hostname", "uptime", "uname", "disk_usage", "memory_usage", "process_count"]
    assert all(r["exit_status"] == 0 for r in out["results"])


async def test_overview_style_commands_overlap_on_one_connection(
    ssh_host: HostConfig, tmp_path: Path
) -> None:
    catalog = tmp_path / "slow.yaml"
    catalog.write_text(
        "commands:\n"
        + "".join(
            f"  slow{i}:\n    description: sleeps\n    category: Test\n"
            f"    template: sleep 0.6\n"
            for i in range(4)
        )
    )
    async with running_agent(settings_for(ssh_host), catalogs=(catalog,)) as running:
        service = running.service
        identity = local_user_identity()
        await service.run("hostname", {}, host=None, identity=identity)  # warm connection
        started = time.perf_counter()
        results = await service.run_many(
            ["slow0", "slow1", "slow2", "slow3"], host=None, identity=identity
        )
        elapsed = time.perf_counter() - started
        assert all(r.exit_status == 0 for r in results)
        # Four 0.6 s commands in well under 4 x 0.6 s: they overlapped.
        assert elapsed < 1.5, elapsed
        status = await service.pool.connection_status()
        assert status["test"]["connected"] is True


@pytest.mark.parametrize(
    "headers",
    [
        {"Host": "evil.example"},
        {"Host": "evil.example:8765"},
        {"Origin": "http://evil.example"},
        {"Origin": "null"},
    ],
)
async def test_dns_rebinding_and_foreign_origins_are_refused(
    agent: RunningAgent, headers: dict[str, str]
) -> None:
    body = {"jsonrpc": "2.0", "id": 1, "method": "ping"}
    async with httpx.AsyncClient() as client:
        response = await client.post(
            agent.url, json=body,
            headers={"Accept": "application/json, text/event-stream", **headers},
        )
    assert response.status_code == 403
    assert "Forbidden" in response.text


async def test_healthz_names_the_caller(agent: RunningAgent) -> None:
    async with httpx.AsyncClient() as client:
        response = await client.get(f"{agent.base}/healthz")
    assert response.status_code == 200
    assert response.json()["status"] == "ok"
    assert "(local mode)" in response.json()["you"]
