"""A shared chat answer and its recordings, opened in Chromium by distinct tailnet identities.

Topology: the agent (`tailnet-agent serve`, its own userspace tailscaled) with the chat on
a scripted Anthropic API; alice, bob and carol are tailnet nodes of their own, and each
browser reaches the agent through its person's node (Chromium's SOCKS5 proxy is that
node's tailscaled), so the agent knows them by WhoIs as it knows anyone. The agent's
policy makes bob an auditor (`audit: true`); carol is an ordinary tailnet user.

Alice asks, a command runs and is recorded, alice shares the answer: bob opens the link
and replays the recording; carol is refused the share, the replay and the cast. Every
page is checked for axe findings and console errors at laptop and phone width, and the
audit log says who shared and who opened. Then alice asks over MCP for a command under
the two-person rule; bob approves it on the approvals page, which then lists it as
decided, with the replay of what ran.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx2
import pytest
import pytest_asyncio
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from tailscale_userspace import TailscaleNode
from tests.support.agent_process import AgentProcess, ready_url, server_env, spawn_agent
from tests.support.browser import (
    CHROMIUM,
    CHROMIUM_ARGS,
    DESKTOP,
    PHONE,
    TIMEOUT,
    ask,
    card,
    check_state,
    document_status_only,
    watch_console,
)
from tests.support.components import missing
from tests.support.fake_anthropic import FakeAnthropic, Step, Text, ToolUse
from tests.support.secrets_planted import AWS_KEY_ID
from tests.support.sshd import Sshd
from tests.support.tailnet import TestTailnet, free_port

POLICY = """
rules:
  - name: auditors
    who: [bob]
    commands: []
    audit: true
  - name: alice-changes
    who: [alice]
    commands: [rotate_logs]
    destructive: true
    approvers: [bob]
"""
CATALOG = f"""
commands:
  slow_report:
    description: Print a report over a second, with a key and a warning on stderr.
    category: Test
    template: >-
      for i in 1 2 3 4; do echo "step $i of 4: ok"; sleep 0.25; done;
      echo 'key {AWS_KEY_ID}'; echo 'warning: low disk' >&2
  rotate_logs:
    description: Pretend to rotate the logs (test command, destructive).
    category: Test
    destructive: true
    template: "echo 'rotated 3 files'; echo 'skipped app.log: busy' >&2"
"""
SCRIPT = [
    Step(when="step 4 of 4", reply=[Text("The report ran: all four steps are ok.")]),
    Step(when="run the report", reply=[ToolUse("execute_command", {"command": "slow_report"})]),
]


@dataclass
class Topology:
    alice: TailscaleNode
    bob: TailscaleNode
    carol: TailscaleNode
    agent: AgentProcess
    base: str
    audit: Path


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeAnthropic]:
    with FakeAnthropic(SCRIPT) as api:
        yield api


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def topology(tailnet: TestTailnet, sshd: Sshd, fake: FakeAnthropic,
                   tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Topology]:
    server = await tailnet.node("sh-server", user="ops")
    alice = await tailnet.node("sh-alice", user="alice")
    bob = await tailnet.node("sh-bob", user="bob")
    carol = await tailnet.node("sh-carol", user="carol")
    server_ip = server.info.ips[0] if server.info else ""
    work = tmp_path_factory.mktemp("share")
    (work / "policy.yaml").write_text(POLICY)
    (work / "extra.yaml").write_text(CATALOG)
    env = {**tailnet.env(user="agent", hostname="agent-share"),
           **server_env(sshd, server_ip, work),
           "ANTHROPIC_API_KEY": "sk-ant-test-not-a-real-key", "ANTHROPIC_MODEL": "claude-test",
           "ANTHROPIC_BASE_URL": fake.base_url}
    agent = spawn_agent(env, "--port", str(free_port()), "--policy", str(work / "policy.yaml"),
                        "--audit-log", str(work / "audit.jsonl"),
                        "--catalog", str(work / "extra.yaml"))
    try:
        url = await ready_url(agent, (alice, bob, carol))
        yield Topology(alice, bob, carol, agent, url.removesuffix("/mcp"), work / "audit.jsonl")
    finally:
        agent.stop()


@pytest.fixture(scope="module")
def downloads() -> Iterator[Path]:
    directory = Path(tempfile.mkdtemp(prefix="tnagent-share-"))
    yield directory
    shutil.rmtree(directory, ignore_errors=True)


class Browsers:
    """Chromium with one context per person, each dialing through that person's node."""

    def __init__(self, playwright: Any) -> None:
        self.browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        self.contexts: list[Any] = []

    def page(self, node: TailscaleNode, viewport: dict[str, int] = DESKTOP) -> Any:
        host, port = node.socks5
        context = self.browser.new_context(
            viewport=viewport, is_mobile=viewport == PHONE, has_touch=viewport == PHONE,
            device_scale_factor=1, proxy={"server": f"socks5://{host}:{port}"})
        self.contexts.append(context)
        return watch_console(context.new_page())

    def close(self) -> None:
        for context in self.contexts:
            context.close()
        self.browser.close()


@contextlib.contextmanager
def chromium() -> Iterator[Browsers]:
    """Chromium for one test, in the thread that calls it: Playwright's sync API must not
    run on the test's event loop, which keeps the tailnet's log readers going."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        missing("Playwright for Python", "pip install playwright (no browser download needed)")
    with sync_playwright() as playwright:
        browsers = Browsers(playwright)
        try:
            yield browsers
        finally:
            browsers.close()


def browse(t: Topology) -> dict[str, Any]:
    """Everything the browsers do in the first test (in a thread of its own)."""
    seen: dict[str, Any] = {}
    with chromium() as browsers:
        alice = browsers.page(t.alice)
        alice.goto(t.base + "/")
        assert "alice" in alice.inner_text("header .facts")
        ask(alice, "run the report please")
        card(alice, "slow_report", "exit 0")
        alice.wait_for_selector("text=all four steps are ok", timeout=TIMEOUT)
        alice.click(".share button")
        link = alice.locator(".share.shared code.cmd")
        link.wait_for(timeout=TIMEOUT)
        url = seen["url"] = link.inner_text()
        replay = alice.locator("a.replay").get_attribute("href")
        seen["call"] = replay.split("/")[2]
        check_state(alice, t.base, "tailnet-share-link-alice")

        # Bob, an auditor, opens the share: the answer, the card, its audit id.
        for viewport, name in ((DESKTOP, "tailnet-share-bob"),
                               (PHONE, "tailnet-share-bob-phone")):
            bob = browsers.page(t.bob, viewport)
            response = bob.goto(url)
            assert response is not None and response.status == 200
            text = bob.inner_text("main")
            assert "Answer shared by alice" in text and "run the report please" in text
            assert "step 4 of 4: ok" in text and seen["call"] in text
            assert AWS_KEY_ID not in bob.content() and "[REDACTED: " in text
            assert bob.locator("form, textarea, [hx-post]").count() == 0
            check_state(bob, t.base, name)
        bob.click("a.replay")
        bob.wait_for_selector(".player[data-ready=true]", timeout=TIMEOUT)
        seen["bob_screen"] = bob.inner_text("[data-screen]")
        check_state(bob, t.base, "tailnet-replay-bob-phone")
        cast = bob.request.get(f"{t.base}/audit/{seen['call']}/cast")
        seen["bob_cast"] = cast.status

        # Carol, on the tailnet but no auditor: the share, the replay and the cast are
        # not there for her.
        for viewport, name in ((DESKTOP, "tailnet-share-carol"),
                               (PHONE, "tailnet-share-carol-phone")):
            carol = browsers.page(t.carol, viewport)
            response = carol.goto(url)
            assert response is not None and response.status == 404
            text = carol.inner_text("main")
            assert "No shared answer here for carol" in text
            assert "run the report" not in text and "step 1" not in carol.content()
            document_status_only(carol, 404)
            check_state(carol, t.base, name)
        response = carol.goto(f"{t.base}/audit/{seen['call']}/replay")
        assert response is not None and response.status == 404
        assert "step 1" not in carol.content()
        document_status_only(carol, 404)
        check_state(carol, t.base, "tailnet-replay-carol")
        seen["carol_cast"] = carol.request.get(f"{t.base}/audit/{seen['call']}/cast")
        seen["carol_cast_text"] = seen["carol_cast"].text()
        seen["carol_cast"] = seen["carol_cast"].status
    return seen


async def test_a_shared_answer_opens_for_an_auditor_and_not_for_another_user(
        topology: Topology) -> None:
    t = topology
    seen = await asyncio.to_thread(browse, t)
    assert seen["bob_screen"].startswith("step 1 of 4: ok\nstep 2 of 4: ok")
    assert "warning: low disk" in seen["bob_screen"] and AWS_KEY_ID not in seen["bob_screen"]
    assert seen["bob_cast"] == 200
    assert seen["carol_cast"] == 404 and "step" not in seen["carol_cast_text"]
    records = [json.loads(line) for line in t.audit.read_text().splitlines()]
    shared = [r for r in records if r.get("event") == "turn-shared"]
    assert len(shared) == 1 and shared[0]["identity"] == "alice"
    assert shared[0]["calls"] == [seen["call"]]
    opened = {(r["identity"], r["allowed"]) for r in records
              if r.get("event") == "share-opened"}
    assert opened == {("bob", True), ("carol", False)}
    end = next(r for r in records if r.get("event") == "end" and r.get("call") == seen["call"])
    assert end["cast"]["id"] == seen["call"]


def approve(t: Topology) -> dict[str, Any]:
    """Bob, on the approvals page: approve alice's waiting request, then replay what ran."""
    seen: dict[str, Any] = {}
    with chromium() as browsers:
        bob = browsers.page(t.bob)
        bob.goto(t.base + "/approvals")
        request = bob.locator("section.approval", has_text="rotate_logs")
        request.wait_for(timeout=60_000)
        assert "alice" in request.inner_text()
        check_state(bob, t.base, "tailnet-approvals-waiting")
        request.locator("button[value=approve]").click()
        decided = bob.locator("ul.decided li", has_text="rotate_logs").first
        decided.locator("a").wait_for(timeout=60_000)  # once the call has ended
        seen["decided"] = decided.inner_text()
        check_state(bob, t.base, "tailnet-approvals-decided")
        phone = browsers.page(t.bob, PHONE)
        phone.goto(t.base + "/approvals")
        phone.locator("ul.decided li a").first.wait_for(timeout=TIMEOUT)
        check_state(phone, t.base, "tailnet-approvals-decided-phone")
        decided.locator("a").click()
        bob.wait_for_selector(".player[data-ready=true]", timeout=TIMEOUT)
        seen["screen"] = bob.inner_text("[data-screen]")
        check_state(bob, t.base, "tailnet-replay-approved")
    return seen


async def test_the_approver_replays_what_they_approved(topology: Topology) -> None:
    t = topology
    host, port = t.alice.socks5
    http = httpx2.AsyncClient(proxy=f"socks5://{host}:{port}", timeout=httpx2.Timeout(90.0))
    async with Client(streamable_http_client(t.base + "/mcp", http_client=http)) as alice:
        call = asyncio.create_task(alice.call_tool("execute_command",
                                                   {"command": "rotate_logs"}))
        seen = await asyncio.to_thread(approve, t)
        result = await asyncio.wait_for(call, 60)
    assert not result.is_error, result.content
    assert "asked by alice: approved by bob; ran, exit 0" in seen["decided"]
    assert seen["screen"].rstrip("\n") == "rotated 3 files\nskipped app.log: busy"
