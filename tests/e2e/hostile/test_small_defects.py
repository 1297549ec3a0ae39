"""Item 8: the smaller defects, each attacked at volume."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import httpx
import mcp
import pytest

from agent.access.identity import local_user_identity
from agent.hosts.inventory import HostConfig
from agent.mcp import build_mcp_server
from tests.support.agents import running_agent, settings_for
from tests.support.peers import (
    ALICE,
    MALLORY_USER,
    by_address,
    http_from,
    mcp_from,
    open_session,
    session_headers,
)
from tests.support.services import ServiceFactory, write_test_catalog
from tests.support.waiting import wait_until
from whitelist import load_catalog

OPERATOR = local_user_identity("local")
PEERS = {"127.0.0.1": OPERATOR, "127.0.0.2": MALLORY_USER, "127.0.0.3": ALICE}


async def test_a_call_without_a_caller_is_refused_not_run_as_the_operator(
    make_service: ServiceFactory, tmp_path: Path
) -> None:
    service = make_service()
    async with mcp.Client(build_mcp_server(service)) as nobody:  # no HTTP, no chat token
        for _ in range(20):
            for tool, args in (("execute_command", {"command": "hostname"}),
                               ("check_disk", {}), ("list_hosts", {}), ("server_status", {})):
                result = await nobody.call_tool(tool, args)
                assert result.is_error and "no caller identity" in str(result.content)
    assert not (tmp_path / "audit.jsonl").exists() or '"ran"' not in (
        tmp_path / "audit.jsonl").read_text()
    stdio = build_mcp_server(service, stdio_caller=local_user_identity("local-operator"))
    async with mcp.Client(stdio) as person:
        assert not (await person.call_tool("execute_command", {"command": "hostname"})).is_error


async def test_transport_oddities_get_4xx_never_5xx(ssh_host: HostConfig) -> None:
    async with running_agent(settings_for(ssh_host)) as agent, \
            http_from("127.0.0.1", timeout=10) as http:
        session = await open_session(http, agent.url)
        for n in range(50):
            for headers in ({**session_headers(session), "Last-Event-ID": str(n)},
                            {"Last-Event-ID": "x" * n, "Accept": "text/event-stream"}):
                response = await http.get(agent.url, headers=headers)
                assert 400 <= response.status_code < 500, response.text


HOSTILE_HOSTS = ["localhost:80@evil.com", "[::1]evil", "127.0.0.1.evil.com", "evil.com",
                 "127.0.0.1:80:80", "localhost@evil", "127.0.0.1 evil", "[::1", "x" * 300,
                 "localhost:99999", "127.0.0.1:-1", "", "localhost/..", "%6cocalhost"]


async def test_host_and_origin_are_parsed_strictly(ssh_host: HostConfig) -> None:
    async with running_agent(settings_for(ssh_host)) as agent:
        port = agent.base.rsplit(":", 1)[1]
        async with httpx.AsyncClient(base_url=agent.base, timeout=10) as http:
            for host in HOSTILE_HOSTS * 5:
                response = await http.get("/healthz", headers={"Host": host})
                assert response.status_code == 403, host
            same = {"Origin": f"http://127.0.0.1:{port}"}
            assert (await http.get("/healthz", headers=same)).status_code == 200
            for origin in (f"http://127.0.0.1:{int(port) + 1}", "http://127.0.0.1",
                           f"https://127.0.0.1:{port}", f"http://localhost:{port}@evil.com",
                           "null", f"http://evil.com:{port}", f"ftp://127.0.0.1:{port}"):
                response = await http.get("/healthz", headers={"Origin": origin})
                assert response.status_code == 403, origin


async def test_errors_quote_only_a_little_of_a_huge_value(ssh_host: HostConfig) -> None:
    huge = "Z" * 100_000
    async with running_agent(settings_for(ssh_host)) as agent, mcp_from(
            agent.url, "127.0.0.1", mode="legacy") as client:
        for tool, args in (
            ("execute_command", {"command": huge}),
            ("execute_command", {"command": "hostname", "host": huge}),
            ("execute_command", {"command": "hostname", "parameters": {huge: 1}}),
            ("execute_command", {"command": "service_status", "parameters": {"unit": huge}}),
            ("list_commands", {"category": huge}),
            ("check_service", {"unit": {huge: huge}}),
            (huge, {}),
        ):
            result = await client.call_tool(tool, args)
            text = " ".join(getattr(c, "text", "") for c in result.content)
            assert result.is_error and len(text) < 1500, (tool, len(text))
            assert "pydantic.dev" not in text and "For further information" not in text


async def test_one_callers_flood_does_not_refuse_everyone_else(
    ssh_host: HostConfig, tmp_path: Path, marker_dir: Path
) -> None:
    catalog = load_catalog([write_test_catalog(tmp_path, marker_dir)])
    settings = settings_for(ssh_host, audit_log=tmp_path / "audit.jsonl", rate_burst=1000)
    async with running_agent(settings, catalog=catalog, resolver=by_address(PEERS)) as agent:
        service = agent.service

        async def slow(identity: object) -> str:
            try:
                await service.run("slow", {}, host=None, identity=identity)  # type: ignore[arg-type]
            except Exception as exc:
                return str(exc)
            return "ran"

        flood = [asyncio.create_task(slow(MALLORY_USER)) for _ in range(40)]
        # The flood has met the limit: 32 of its calls already refused, 8 running.
        await wait_until(lambda: sum(task.done() for task in flood) >= 32, 30, "refusals")
        others = await asyncio.gather(slow(ALICE), slow(OPERATOR), slow(ALICE))
        flooded = await asyncio.gather(*flood)
    assert others == ["ran", "ran", "ran"]
    refused = [r for r in flooded if r != "ran"]
    assert len(refused) == 32 and all("you already have 8 calls" in r for r in refused)


async def test_pending_palette_runs_are_bounded(
    ssh_host: HostConfig, tmp_path: Path, marker_dir: Path
) -> None:
    catalog = load_catalog([write_test_catalog(tmp_path, marker_dir)])
    async with running_agent(settings_for(ssh_host), catalog=catalog) as agent, \
            httpx.AsyncClient(base_url=agent.base, timeout=10) as http:
        pending: list[str] = []
        for _ in range(100):
            response = await http.post("/chat/run", data={"command": "make_marker"},
                                       headers={"Sec-Fetch-Site": "same-origin"})
            pending += re.findall(r"/chat/run/([0-9a-f]{16})", response.text)
        assert len(pending) == 100
        oldest = await http.post(f"/chat/run/{pending[0]}", data={"decision": "confirm"},
                                 headers={"Sec-Fetch-Site": "same-origin"})
        assert "no longer pending" in oldest.text
        newest = await http.post(f"/chat/run/{pending[-1]}", data={"decision": "cancel"},
                                 headers={"Sec-Fetch-Site": "same-origin"})
        assert "no longer pending" not in newest.text
    assert not (marker_dir / "marker").exists()


@pytest.fixture(autouse=True)
def _quiet(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("ERROR")
