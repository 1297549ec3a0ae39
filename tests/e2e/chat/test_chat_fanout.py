"""Claude's fan-out in the chat: run_on_hosts is among its tools, the result is a table with
the failures first, and a destructive fan-out waits for one click naming every host."""

from __future__ import annotations

import dataclasses
import json
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agent.chat import ChatOptions
from agent.chat.agent_loop import LoopOptions
from agent.settings import Settings
from tests.e2e.chat.conftest import PHONE, PageFactory, ServedChat
from tests.e2e.chat.helpers import TIMEOUT, ask, check_state, wait_idle
from tests.support.fake_anthropic import FakeAnthropic, Step, Text, ToolUse, tool_results
from tests.support.sshd import Sshd
from whitelist import load_catalog

pytestmark = pytest.mark.e2e


@pytest.fixture
def marks() -> Iterator[Path]:
    directory = Path(tempfile.mkdtemp(prefix="tnagent-chat-fanout-"))
    directory.chmod(0o777)  # the SSH login user writes here
    yield directory
    shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def fanout_chat(sshd: Sshd, marks: Path, tmp_path: Path, fake_api: Any) -> Iterator[Any]:
    """The chat app over three hosts: the test sshd as web-1 and web-2, and web-3 where
    nothing listens."""
    (tmp_path / "extra.yaml").write_text(f"""
commands:
  mark_all:
    description: Leave a mark (test command, destructive).
    category: Test
    destructive: true
    template: "touch -- {marks}/mark"
""")
    hosts = {name: sshd.host_config(name) for name in ("web-1", "web-2")}
    hosts["web-3"] = dataclasses.replace(sshd.host_config("web-3"), port=1)
    served: list[ServedChat] = []

    def start(fake: FakeAnthropic) -> ServedChat:
        settings = Settings(hosts=hosts, default_host="web-1", anthropic_model="claude-test",
                            anthropic_api_key="sk-ant-test-not-a-real-key",
                            anthropic_base_url=fake.base_url)
        options = ChatOptions(loop=LoopOptions(overloaded_backoff=0.05), sdk_max_retries=1)
        app = ServedChat(settings, load_catalog([tmp_path / "extra.yaml"]), options).start()
        served.append(app)
        return app

    yield start
    for app in served:
        app.stop()


def test_claude_fans_out_and_the_card_puts_failures_first(
    fanout_chat: Any, fake_api: Any, page: Any, open_page: PageFactory
) -> None:
    fake = fake_api([
        Step(when="hostnames", reply=[Text("Asking every host."),
                                      ToolUse("run_on_hosts", {"command": "hostname",
                                                               "hosts": ["all"]})]),
        Step(when="summary", reply=[Text("Two of three hosts answered; web-3 is unreachable.")]),
    ])
    app = fanout_chat(fake)
    page.goto(app.url + "/")
    ask(page, "what are the hostnames of all hosts?")
    page.wait_for_selector("text=web-3 is unreachable", timeout=TIMEOUT)
    wait_idle(page, 1)

    card = page.locator("article.card.fanout").last
    assert "2 of 3 hosts ok" in card.locator(".card-head").inner_text()
    assert "on 3 hosts" in card.locator(".card-head").inner_text()
    rows = card.locator("tr.fanout-row")
    assert [rows.nth(i).get_attribute("data-host") for i in range(3)] == [
        "web-3", "web-1", "web-2"]
    assert rows.nth(0).locator(".badge").inner_text() == "failed"
    assert "cannot reach web-3" in rows.nth(0).inner_text()
    # Each host that ran links to its own recording.
    replays = [rows.nth(i).locator("a.replay") for i in range(3)]
    assert [r.count() for r in replays] == [0, 1, 1]
    assert replays[1].get_attribute("href") != replays[2].get_attribute("href")
    # Claude had the tool, and got the structured result per host.
    assert "run_on_hosts" in {tool["name"] for tool in fake.requests[0]["tools"]}
    sent = json.loads(tool_results(fake.requests[-1])[-1]["content"])
    assert sent["summary"] == {"total": 3, "ok": 2, "failed": 1, "offline": 0, "refused": 0}
    check_state(page, app.url, "chat-fanout")
    # On a phone the table scrolls sideways inside its card instead of squeezing.
    phone = open_page(PHONE, "dark")
    phone.goto(app.url + "/")
    wrap = phone.locator("article.card.fanout .table-wrap").last
    wrap.wait_for(timeout=TIMEOUT)
    assert wrap.evaluate("e => e.scrollWidth > e.clientWidth"), "the table squeezes"
    wrap.scroll_into_view_if_needed()
    check_state(phone, app.url, "phone-dark-chat-fanout")


def test_a_destructive_fan_out_in_chat_waits_for_one_click_naming_every_host(
    fanout_chat: Any, fake_api: Any, page: Any, marks: Path
) -> None:
    fake = fake_api([
        Step(when="mark the web", reply=[Text("Marking."),
                                 ToolUse("run_on_hosts", {"command": "mark_all",
                                                          "hosts": "web-1, web-2"})]),
        Step(when="summary", reply=[Text("Both hosts are marked.")]),
    ])
    app = fanout_chat(fake)
    page.goto(app.url + "/")
    ask(page, "mark the web hosts")
    confirm = page.wait_for_selector(".confirm", timeout=TIMEOUT)
    text = confirm.inner_text()
    assert "web-1, web-2" in text and f"touch -- {marks}/mark" in text
    assert not (marks / "mark").exists()
    page.click(".confirm button[value=confirm]")
    page.wait_for_selector("text=Both hosts are marked", timeout=TIMEOUT)
    wait_idle(page, 1)
    assert (marks / "mark").exists()
    sent = json.loads(tool_results(fake.requests[-1])[-1]["content"])
    assert [h["status"] for h in sent["hosts"]] == ["ok", "ok"]
