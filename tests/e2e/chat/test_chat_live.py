"""A long command in the chat: its lines appear in the running tool card as they arrive."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.support.browser import TIMEOUT, ask, card, check_state, wait_idle
from tests.support.chat import EXTRA_CATALOG, ChatFactory
from tests.support.fake_anthropic import FakeAnthropic, Step, Text, ToolUse

TICKER = """
  ticker:
    description: Print a numbered line five times a second (test command).
    category: Test
    template: "i=0; while [ $i -lt 30 ]; do echo tick-$i; i=$((i+1)); sleep 0.2; done"
    timeout: 30
"""


@pytest.fixture
def catalog_file(tmp_path: Path, marker: Path) -> Path:
    path = tmp_path / "extra.yaml"
    path.write_text(EXTRA_CATALOG.replace("{marker}", str(marker)) + TICKER)
    return path


def test_lines_of_a_running_command_show_in_its_card(
    chat_app: ChatFactory, fake_api: Any, page: Any
) -> None:
    fake: FakeAnthropic = fake_api([
        Step(when="tick for me", reply=[ToolUse("execute_command", {"command": "ticker"})]),
        Step(when="tick-29", reply=[Text("It ticked thirty times.")]),
    ])
    app = chat_app(fake)
    page.goto(app.url + "/")
    ask(page, "tick for me")
    live = page.locator(".card.running pre.live")
    live.wait_for(timeout=TIMEOUT)
    # Lines are on the page while the command still runs (the card is still "running").
    page.wait_for_function(
        "() => { const p = document.querySelector('.card.running pre.live');"
        " return p && p.textContent.includes('tick-3'); }", timeout=TIMEOUT)
    shown_live = live.inner_text()
    assert page.locator(".card.running").count() == 1
    assert shown_live.splitlines()[0] == "tick-0"
    check_state(page, app.url, "chat-live-output")
    ticked = card(page, "ticker", "exit 0")
    page.wait_for_selector("text=It ticked thirty times.", timeout=TIMEOUT)
    wait_idle(page, 1)
    assert "tick-29" in (ticked.locator("pre.out").text_content() or "")
    assert page.locator(".card.running").count() == 0
    assert not page.console_errors, page.console_errors
