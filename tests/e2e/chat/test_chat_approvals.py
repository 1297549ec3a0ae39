"""A time-limited approval from the chat page: the confirm box's "approve the same command on
this host for 15 minutes" lets the next identical run go without a second click."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from agent.audit.reader import read_calls
from tests.support.browser import TIMEOUT, card, check_state
from tests.support.chat import EXTRA_CATALOG, ChatFactory

ELEVATED = """
  restart_cron:
    description: Restart cron as root (test command, never confirmed here).
    category: Test
    template: "systemctl restart cron"
    become: true
    destructive: true
"""


@pytest.fixture
def catalog_file(tmp_path: Path, marker: Path) -> Path:
    path = tmp_path / "extra.yaml"
    path.write_text(EXTRA_CATALOG.replace("{marker}", str(marker)) + ELEVATED)
    return path


def test_an_approval_for_15_minutes_spares_the_next_click(
    chat_app: ChatFactory, page: Any, marker: Path
) -> None:
    app = chat_app(None)
    page.goto(app.url + "/")
    page.click("#palette details.cmd:has(.name:text-is('remove_marker')) summary")
    run = "form[data-command='remove_marker'] button[type=submit]"
    marker.touch()
    page.click(run)
    page.wait_for_selector(".confirm", timeout=TIMEOUT)
    page.select_option(".confirm select[name=minutes]", "15")
    check_state(page, app.url, "confirm-approve-for")
    page.click(".confirm button[value=confirm]")
    card(page, "remove_marker", "exit 0")
    assert not marker.exists()

    marker.touch()
    page.click(run)  # no confirm box this time: the card comes straight back
    page.wait_for_function("() => document.querySelectorAll('.card.ok').length === 2",
                           timeout=TIMEOUT)
    assert page.locator(".confirm").count() == 0 and not marker.exists()
    calls = [c.merged() for c in read_calls(app.service.audit.path)
             if c.start.get("command") == "remove_marker"]
    assert calls[-2]["approval_granted"]["minutes"] == 15
    assert calls[-1]["approval"]["id"] == calls[-2]["approval_granted"]["id"]
    assert not page.console_errors, page.console_errors


def test_the_confirm_box_says_a_command_runs_as_root(chat_app: ChatFactory, page: Any) -> None:
    app = chat_app(None)
    page.goto(app.url + "/")
    page.click("#palette details.cmd:has(.name:text-is('restart_cron')) summary")
    page.click("form[data-command='restart_cron'] button[type=submit]")
    confirm = page.wait_for_selector(".confirm", timeout=TIMEOUT)
    assert "as root (sudo)" in confirm.inner_text()
    page.click(".confirm button[value=cancel]")
    card(page, "restart_cron", "declined")
