"""Runbook starters on the chat page: a click asks Claude to work through a runbook, with the
same text an MCP client gets from the prompt of the same name."""

from __future__ import annotations

from typing import Any

from agent.mcp.runbooks import BY_NAME, render
from tests.support.browser import TIMEOUT, card, wait_idle
from tests.support.chat import ChatFactory
from tests.support.fake_anthropic import FakeAnthropic, Step, Text, ToolUse, last_user_text


def test_a_runbook_starter_starts_a_turn_with_the_runbook(
    chat_app: ChatFactory, fake_api: Any, page: Any
) -> None:
    fake: FakeAnthropic = fake_api([
        Step(when="is filling up", reply=[ToolUse("check_disk", {})]),
        Step(when="Filesystem", reply=[Text("The root filesystem has room.")]),
        Step(when="is failing", reply=[Text("Checked the unit.")]),
    ])
    app = chat_app(fake)
    page.goto(app.url + "/")
    starters = page.locator("#starters")
    assert starters.locator("button").all_inner_texts() == [
        "Disk is filling up", "A service is failing", "Health check of a host"]
    starters.locator("button", has_text="Disk is filling up").click()
    card(page, "disk_usage", "exit 0")
    page.wait_for_selector("text=The root filesystem has room.", timeout=TIMEOUT)
    wait_idle(page, 1)
    sent = last_user_text(fake.requests[0])
    visible = {c.name for c in app.service.catalog}
    assert sent == render(BY_NAME["disk_filling_up"], host="test", may_run=visible.__contains__)
    assert "\nA filesystem on test" in page.locator(".msg.user").first.inner_text()

    # The service runbook needs a unit name; the form says so before anything is sent.
    form = starters.locator("form:has(input[name=unit])")
    form.locator("input[name=unit]").fill("cron.service")
    form.locator("button").click()
    page.wait_for_selector("text=Checked the unit.", timeout=TIMEOUT)
    assert last_user_text(fake.requests[-1]).startswith(
        "The service cron.service on test is failing.")
    assert not page.console_errors, page.console_errors
