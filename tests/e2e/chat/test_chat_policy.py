"""The chat page per caller: Claude's tools and prompt, and the palette, follow the policy;
a refused call comes back as a card naming the rule."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import httpx
import pytest

from agent.access.identity import Identity
from agent.access.policy import DEFAULT_RULE
from agent.hosts.inventory import HostConfig
from tests.support.agents import running_agent, settings_for
from tests.support.fake_anthropic import FakeAnthropic, Step, Text, ToolUse
from tests.support.services import write_test_catalog
from tests.support.waiting import wait_until
from whitelist import load_catalog

BOB = Identity(login="bob@example.com", node="phone.tailnet.test")
CI = Identity(login=None, node="ci.tailnet.test", tags=("tag:ci",))
LOCAL = Identity(login="me", node="here", source="local")
SAME_ORIGIN = {"Sec-Fetch-Site": "same-origin"}

Serve = Callable[[Identity], Awaitable[str]]


@pytest.fixture
def fake() -> Iterator[FakeAnthropic]:
    api = FakeAnthropic([
        Step(when="make the marker", reply=[ToolUse("execute_command",
                                                    {"command": "make_marker"})]),
        Step(when="refused", reply=[Text("It was refused.")]),
        Step(when="twisted marker", reply=[ToolUse(
            "execute_command", {"command": "make_marker", "parameters": {"x" * 5000: 1}})]),
        Step(when="unknown argument", reply=[Text("It did not validate.")]),
    ]).start()
    yield api
    api.stop()


@pytest.fixture
async def serve(ssh_host: HostConfig, tmp_path: Path, marker_dir: Path,
                fake: FakeAnthropic) -> AsyncIterator[Serve]:
    catalog = load_catalog([write_test_catalog(tmp_path, marker_dir)])
    async with contextlib.AsyncExitStack() as stack:

        async def start(identity: Identity) -> str:
            settings = settings_for(
                ssh_host, audit_log=tmp_path / "audit.jsonl",
                anthropic_api_key="sk-ant-test-not-a-real-key", anthropic_model="claude-test",
                anthropic_base_url=fake.base_url,
            )
            running = await stack.enter_async_context(
                running_agent(settings, identity=identity, catalog=catalog, mode="tailnet"))
            return running.base

        yield start


async def test_the_palette_shows_each_caller_what_they_may_run(
    serve: Serve,
) -> None:
    pages: dict[str, str] = {}
    for who, identity in (("bob", BOB), ("ci", CI), ("local", LOCAL)):
        async with httpx.AsyncClient(base_url=await serve(identity)) as http:
            pages[who] = (await http.get("/")).text
    assert "disk_usage" in pages["bob"] and "make_marker" not in pages["bob"]
    assert "disk_usage" not in pages["ci"] and "make_marker" not in pages["ci"]
    assert "make_marker" in pages["local"]


async def test_a_palette_run_of_a_refused_command_shows_the_rule_without_a_confirmation(
    serve: Serve, marker_dir: Path,
) -> None:
    async with httpx.AsyncClient(base_url=await serve(BOB)) as http:
        response = await http.post("/chat/run", data={"command": "make_marker"},
                                   headers=SAME_ORIGIN)
    assert response.status_code == 200
    assert "refused by policy" in response.text and DEFAULT_RULE in response.text
    assert "/chat/run/" not in response.text  # no confirm form
    assert not (marker_dir / "marker").exists()


async def test_claude_sees_only_the_callers_tools_and_a_refusal_names_the_rule(
    serve: Serve, fake: FakeAnthropic, marker_dir: Path,
) -> None:
    async with httpx.AsyncClient(base_url=await serve(BOB), timeout=30) as http:
        response = await http.post("/chat/send", data={"message": "make the marker"},
                                   headers=SAME_ORIGIN)
        assert response.status_code == 200
        await wait_until(lambda: len(fake.requests) >= 2, 15, "the second request to the API")
    first, second = fake.requests[:2]
    tools = {t["name"] for t in first["tools"]}
    assert "execute_command" in tools and "check_disk" in tools
    assert "make_marker" not in first["system"] and "disk_usage" in first["system"]
    result = second["messages"][-1]["content"][0]
    assert result["is_error"] and "refused by policy" in str(result["content"])
    assert not (marker_dir / "marker").exists()


async def test_a_tagged_node_gets_no_command_tools_in_the_chat(
    serve: Serve, fake: FakeAnthropic,
) -> None:
    async with httpx.AsyncClient(base_url=await serve(CI), timeout=30) as http:
        await http.post("/chat/send", data={"message": "make the marker"}, headers=SAME_ORIGIN)
        await wait_until(lambda: fake.requests, 15, "a request to the API")
    tools = {t["name"] for t in fake.requests[0]["tools"]}
    assert tools == {"ping", "server_status", "list_commands", "list_hosts"}


async def test_the_hosts_panel_shows_and_checks_only_the_callers_hosts(
    serve: Serve, ssh_host: HostConfig,
) -> None:
    async with httpx.AsyncClient(base_url=await serve(BOB), timeout=30) as http:
        page = (await http.get("/")).text
        assert f'class="host-name">{ssh_host.name}<' in page
        checked = await http.post("/chat/hosts/check", data={"host": ssh_host.name},
                                  headers=SAME_ORIGIN)
        assert "answers over SSH" in checked.text and "load average" in checked.text
        unknown = await http.post("/chat/hosts/check", data={"host": "db-9"},
                                  headers=SAME_ORIGIN)
        assert "There is no host &#39;db-9&#39; you may use." in unknown.text
    async with httpx.AsyncClient(base_url=await serve(CI), timeout=30) as http:
        page = (await http.get("/")).text
        assert "host-name" not in page and "No host you may use" in page
        refused = await http.post("/chat/hosts/check", data={"host": ssh_host.name},
                                  headers=SAME_ORIGIN)
        assert "There is no host" in refused.text and "answers over SSH" not in refused.text


async def test_the_chats_check_before_a_confirmation_is_audited_too(
    serve: Serve, fake: FakeAnthropic, marker_dir: Path, tmp_path: Path
) -> None:
    # Claude asks for a destructive command with arguments that do not validate: the chat
    # refuses it before offering a confirmation, and that refusal is on the record.
    async with httpx.AsyncClient(base_url=await serve(LOCAL), timeout=30) as http:
        await http.post("/chat/send", data={"message": "a twisted marker please"},
                        headers=SAME_ORIGIN)
        await wait_until(lambda: len(fake.requests) >= 2, 15, "the second request to the API")
    result = fake.requests[1]["messages"][-1]["content"][0]
    assert result["is_error"] and "unknown argument" in str(result["content"])
    assert len(str(result["content"])) < 600
    records = [json.loads(line) for line in (tmp_path / "audit.jsonl").read_text().splitlines()]
    (start,) = [r for r in records if r["event"] == "start"]
    (end,) = [r for r in records if r["event"] == "end"]
    assert start["command"] == "make_marker" and start["tool"] == "execute_command"
    assert end["outcome"] == "invalid" and "unknown argument" in end["error"]
    assert not (marker_dir / "marker").exists()
