"""The single executable on its own: size, version, the demo, and its unpacked files."""

from __future__ import annotations

import asyncio
import os
import re
import stat
import subprocess
import time
from pathlib import Path

import httpx2
from mcp import Client, StdioServerParameters
from mcp.client.stdio import stdio_client

from tests.support.frozen import (
    MAX_SIZE,
    exe_of,
    executable,
    process_tree,
    record_figure,
    run,
    tree_pss_mib,
    tree_rss_mib,
    unpack_dirs,
    user_env,
)
from tests.support.output import assert_json_lines, assert_no_warning
from tests.support.tailnet import TailnetBinaries
from tests.support.waiting import wait_until_sync

TAILSCALE_VERSION = "1.98.8"


def test_is_one_file_within_the_size_budget() -> None:
    size = executable().stat().st_size
    record_figure("executable size", size / 1024 / 1024, "MiB")
    assert size <= MAX_SIZE, f"{executable()} is {size / 1024 / 1024:.1f} MiB, over 80 MiB"


def test_version_names_ours_and_the_embedded_tailscaled(tmp_path: Path) -> None:
    env = user_env(tmp_path)
    started = time.monotonic()
    done = subprocess.run(
        [str(executable()), "version"], cwd=tmp_path, env=env,
        capture_output=True, text=True, timeout=60, check=False,
    )
    record_figure("`version`: unpack, start Python, run tailscaled --version",
                  (time.monotonic() - started) * 1000, "ms")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("tailnet-agent "), done.stdout
    # The embedded one: it lives in the unpack directory (sys._MEIPASS).
    assert lines[1].startswith(f"tailscaled {TAILSCALE_VERSION}"), done.stdout
    assert lines[1].endswith("(embedded)"), done.stdout


async def test_demo_starts_and_answers_an_mcp_client(tmp_path: Path) -> None:
    env = user_env(tmp_path)
    workdir = tmp_path / "empty"
    workdir.mkdir()
    with run(["demo", "--port", "0"], cwd=workdir, env=env) as agent:
        url = (await agent.wait_for(r"MCP endpoint: (http://127\.0\.0\.1:\d+/mcp)", 60)).group(1)
        await agent.wait_for(r"^Ready\.", 30)
        record_figure("demo: cold start to Ready", (time.monotonic() - agent.started) * 1000, "ms")

        # The page and every asset it links come out of the bundle (package-relative files).
        base = url.removesuffix("/mcp")
        async with httpx2.AsyncClient(trust_env=False, timeout=30) as http:
            page = await http.get(f"{base}/")
            assert page.status_code == 200, page.text
            assets = re.findall(r'(?:src|href)="(/static/[^"]+)"', page.text)
            assert any(a.endswith(".js") for a in assets), page.text
            for asset in assets:
                response = await http.get(base + asset)
                assert response.status_code == 200, (asset, response.status_code)
                assert response.content, asset

        async with Client(url) as client:
            tools = {t.name for t in (await client.list_tools()).tools}
            assert {"check_memory", "check_disk", "list_hosts"} <= tools
            result = await client.call_tool("check_memory", {})
        assert not result.is_error, result.content
        assert result.structured_content is not None
        assert "Mem:" in result.structured_content["stdout"]
        assert result.structured_content["host"] == "demo"

        await asyncio.sleep(1.0)  # idle: let the request's garbage settle
        pid = agent.process.pid
        record_figure("demo: idle memory, VmRSS summed over the process tree", tree_rss_mib(pid),
                      "MiB")
        record_figure("demo: idle memory, PSS summed over the process tree", tree_pss_mib(pid),
                      "MiB")
        assert await agent.aterminate() in (0, -15), agent.output()
    assert_no_warning(agent.output())


async def test_the_executable_parses_output_and_filters_hosts(tmp_path: Path) -> None:
    """jc and jmespath are in the bundle and work there: disk_usage's rows come back as
    data, and run_on_hosts' filter keeps or drops the demo host by them."""
    env = user_env(tmp_path)
    with run(["demo", "--port", "0"], cwd=tmp_path, env=env) as agent:
        url = (await agent.wait_for(r"MCP endpoint: (http://127\.0\.0\.1:\d+/mcp)", 60)).group(1)
        await agent.wait_for(r"^Ready\.", 30)
        async with Client(url) as client:
            disk = await client.call_tool("check_disk", {})
            kept = await client.call_tool("run_on_hosts", {
                "command": "disk_usage", "hosts": "all", "filter": "use_percent >= `0`"})
            dropped = await client.call_tool("run_on_hosts", {
                "command": "disk_usage", "hosts": "all", "filter": "use_percent > `100`"})
            refused = await client.call_tool("run_on_hosts", {
                "command": "disk_usage", "hosts": "all", "filter": "use_pct > `1`"})
        assert await agent.aterminate() in (0, -15), agent.output()
    data = disk.structured_content
    assert data is not None and data["parse_note"] == "", data
    assert data["data"] and all("use_percent" in row for row in data["data"])
    assert kept.structured_content is not None and dropped.structured_content is not None
    assert kept.structured_content["filter"]["matched"] == 1
    assert [h["host"] for h in kept.structured_content["hosts"]] == ["demo"]
    assert dropped.structured_content["filter"]["not_matched"] == 1
    assert dropped.structured_content["hosts"] == []
    assert refused.is_error and "not a field of 'disk_usage'" in refused.content[0].text
    assert_no_warning(agent.output())


async def test_demo_in_json_mode_prints_json_only(tmp_path: Path) -> None:
    """`--log-format json` from the executable: its whole output, stdout and stderr together,
    one JSON object per line, and no warning, from start to stop."""
    env = user_env(tmp_path)
    with run(["demo", "--port", "0", "--log-format", "json"], cwd=tmp_path, env=env) as agent:
        url = (await agent.wait_for(r"MCP endpoint: (http://127\.0\.0\.1:\d+/mcp)", 60)).group(1)
        await agent.wait_for(r"Ready\.", 30)
        async with Client(url) as client:
            result = await client.call_tool("check_memory", {})
        assert not result.is_error, result.content
        assert await agent.aterminate() in (0, -15), agent.output()
    assert_no_warning(agent.output())
    assert_json_lines(agent.output(), "the executable's output")


def test_unpacks_privately_and_cleans_up_after_sigterm(tmp_path: Path) -> None:
    env = user_env(tmp_path)
    tmpdir = Path(env["TMPDIR"])
    with run(["demo", "--port", "0"], cwd=tmp_path, env=env) as agent:
        agent.read_until(r"^Ready\.", 60)
        unpacked = unpack_dirs(tmpdir)
        assert len(unpacked) == 1, unpacked
        mode = unpacked[0].stat()
        assert stat.S_IMODE(mode.st_mode) == 0o700, oct(mode.st_mode)
        assert mode.st_uid == os.getuid()
        # The bootloader is the parent; Python runs in a child started from the unpack dir.
        tree = process_tree(agent.process.pid)
        assert len(tree) >= 2, tree
        assert (unpacked[0] / "tailscaled").is_file()

        assert agent.terminate() in (0, -15), agent.output()
    assert unpack_dirs(tmpdir) == [], "the unpack directory was left behind after SIGTERM"
    assert not [pid for pid in tree if exe_of(pid)], "a process of the agent outlived it"


def test_tailscaled_environment_variable_overrides_the_embedded_one(
    tmp_path: Path, tailnet_binaries: TailnetBinaries
) -> None:
    other = tailnet_binaries.tailscaled
    env = user_env(tmp_path, {"TAILSCALED": str(other)})
    done = subprocess.run(
        [str(executable()), "version"], cwd=tmp_path, env=env,
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert done.returncode == 0, done.stderr
    assert f"({other.resolve()})" in done.stdout, done.stdout


def test_sigkill_of_the_bootloader_stops_the_agent_and_cleans_up(tmp_path: Path) -> None:
    """The Python child follows its bootloader parent even when that dies without notice."""
    env = user_env(tmp_path)
    tmpdir = Path(env["TMPDIR"])
    with run(["demo", "--port", "0"], cwd=tmp_path, env=env) as agent:
        agent.read_until(r"^Ready\.", 60)
        tree = process_tree(agent.process.pid)
        assert len(tree) >= 2, tree
        agent.process.kill()
        agent.process.wait()
        wait_until_sync(lambda: not [pid for pid in tree if exe_of(pid)], 20,
                        "the agent gone with its bootloader (it outlived it)", every=0.1)
    assert unpack_dirs(tmpdir) == [], "the unpack directory was left behind"


async def test_mcp_over_stdio_through_the_bootloader(tmp_path: Path) -> None:
    """Claude Desktop's way in: stdin/stdout pass through the bootloader to the agent."""
    server = StdioServerParameters(
        command=str(executable()), args=["mcp", "--stdio"], env=user_env(tmp_path),
        cwd=str(tmp_path),
    )
    errlog = tmp_path / "stderr"
    with errlog.open("w") as err:
        async with Client(stdio_client(server, errlog=err)) as client:
            tools = {t.name for t in (await client.list_tools()).tools}
    assert {"check_memory", "list_hosts"} <= tools
    assert_no_warning(errlog.read_text(), "stderr")
