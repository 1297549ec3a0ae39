"""A tool card links to the replay of its recording: the page shows the call's audit record
and plays the recorded output (redacted, stderr marked) in Chromium, at laptop and phone
width, axe-clean and without console errors under the page's CSP."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.support.artifacts import ARTIFACTS
from tests.support.browser import (
    DESKTOP,
    PHONE,
    TIMEOUT,
    PageFactory,
    ask,
    card,
    check_state,
    document_status_only,
    wait_idle,
)
from tests.support.chat import EXTRA_CATALOG, ChatFactory
from tests.support.fake_anthropic import Step, Text, ToolUse
from tests.support.secrets_planted import AWS_KEY_ID

EXPECTED = ("step 1 of 5: ok\nstep 2 of 5: ok\nstep 3 of 5: ok\nstep 4 of 5: ok\n"
            "step 5 of 5: ok\nall good, key [REDACTED: ")


# What a terminal's progress display prints: carriage returns, an erased line, colour,
# backspaces, a tab, a title escape (skipped), 256-colour and bold.
TERMINAL = """
  progress:
    description: Print a progress display (test command).
    category: Test
    template: >-
      printf 'copying:  10%%\\rcopying:  50%%\\rcopying: 100%%\\n';
      printf 'stale text\\r\\033[Kfresh\\n';
      printf '\\033]0;a title\\007\\033[1;31mFAILED\\033[0m abcX\\bd\\tend\\n';
      printf '\\033[38;5;208morange\\033[39m plain\\n'
"""


@pytest.fixture
def catalog_file(tmp_path: Path, marker: Path) -> Path:
    path = tmp_path / "extra.yaml"
    path.write_text(EXTRA_CATALOG.replace("{marker}", str(marker)) + TERMINAL)
    return path


def report_script() -> list[Step]:
    return [
        Step(when="step 5 of 5", reply=[Text("The report ran: all five steps are ok.")]),
        Step(when="run the report", reply=[ToolUse("execute_command",
                                                   {"command": "slow_report"})]),
    ]


def replay_ready(page: Any) -> None:
    page.wait_for_selector(".player[data-ready=true]", timeout=TIMEOUT)


def test_a_tool_card_replays_its_recording(chat_app: ChatFactory, fake_api: Any,
                                           open_page: PageFactory) -> None:
    app = chat_app(fake_api(report_script()))
    page = open_page()
    page.goto(app.url + "/")
    ask(page, "run the report please")
    report = card(page, "slow_report", "exit 0")
    wait_idle(page, 1)
    check_state(page, app.url, "replay-card")
    link = report.locator("a.replay")
    href = link.get_attribute("href")
    assert href is not None and href.startswith("/audit/") and href.endswith("/replay")
    call = href.split("/")[2]
    link.click()
    page.wait_for_url(f"**/audit/{call}/replay")
    replay_ready(page)

    # The whole output first: the card's output, redacted, stderr marked.
    screen = page.locator("[data-screen]")
    text = screen.inner_text()
    assert text.startswith(EXPECTED) and AWS_KEY_ID not in text
    assert "warning: low disk" in screen.locator(".e").all_inner_texts()[-1]
    assert screen.locator(".c2", has_text="all good").count() == 1
    facts = page.locator(".record-facts").inner_text()
    assert call in facts and "exit 0" in facts and "sha256" in facts
    check_state(page, app.url, "replay-desktop")

    # Play: the screen empties, fills line by line, and ends as it began.
    page.select_option("[data-speed]", "2")
    page.click("[data-play]")
    page.wait_for_function(
        "() => { const t = document.querySelector('[data-screen]').innerText;"
        " return t.includes('step 1') && !t.includes('step 5'); }", timeout=TIMEOUT)
    page.screenshot(path=str(ARTIFACTS / "replay-playing.png"))
    page.wait_for_function(
        "() => document.querySelector('[data-play]').textContent === 'Replay'", timeout=TIMEOUT)
    assert screen.inner_text() == text
    # Seeking back to the start shows nothing yet.
    page.locator("[data-seek]").fill("0")
    assert "step" not in screen.inner_text()
    assert not page.console_errors, page.console_errors

    phone = open_page(PHONE)
    phone.goto(app.url + href)
    replay_ready(phone)
    check_state(phone, app.url, "replay-phone")
    for scheme, name in (("dark", "replay-desktop-dark"),):
        dark = open_page(DESKTOP, scheme)
        dark.goto(app.url + href)
        replay_ready(dark)
        check_state(dark, app.url, name)

    # The cast itself: asciinema v2, the player's source.
    response = page.request.get(app.url + f"/audit/{call}/cast")
    assert response.status == 200 and response.headers["content-type"].startswith(
        "application/x-asciicast")
    assert response.text().startswith('{"version": 2,')


def test_an_unknown_call_has_no_replay(chat_app: ChatFactory, open_page: PageFactory) -> None:
    app = chat_app(None)
    page = open_page()
    response = page.goto(app.url + "/audit/00000000deadbeef/replay")
    assert response is not None and response.status == 404
    assert "No call '00000000deadbeef'" in page.inner_text("main")
    document_status_only(page, 404)
    check_state(page, app.url, "replay-unknown")
    assert page.request.get(app.url + "/audit/..%2f..%2fetc/cast").status == 404


def test_a_finished_turn_is_shared_as_a_read_only_page(
        chat_app: ChatFactory, fake_api: Any, open_page: PageFactory) -> None:
    app = chat_app(fake_api(report_script()))
    page = open_page()
    page.goto(app.url + "/")
    ask(page, "run the report please")
    card(page, "slow_report", "exit 0")
    wait_idle(page, 1)
    page.click(".share button")
    link = page.locator(".share.shared code.cmd")
    link.wait_for(timeout=TIMEOUT)
    url = link.inner_text()
    assert url.startswith(app.url + "/share/")
    check_state(page, app.url, "share-link")
    # A reload keeps a Share button under the turn (from the history).
    page.reload()
    assert page.locator(".share button").count() == 1

    for viewport, name in ((DESKTOP, "share-desktop"), (PHONE, "share-phone")):
        shared = open_page(viewport)
        shared.goto(url)
        text = shared.inner_text("main")
        assert "run the report please" in text and "all five steps are ok" in text
        assert "step 5 of 5: ok" in text and AWS_KEY_ID not in shared.content()
        # Read-only: nothing to submit, no token of the sharer's session.
        assert shared.locator("form, textarea, input, [hx-post]").count() == 0
        assert "X-Chat-Token" not in shared.content()
        call = shared.locator("a.replay").get_attribute("href")
        assert call is not None and call.split("/")[2] in text  # the audit id is shown
        check_state(shared, app.url, name)
    shared.click("a.replay")
    replay_ready(shared)


def test_the_player_draws_what_a_terminal_would(chat_app: ChatFactory,
                                                open_page: PageFactory) -> None:
    app = chat_app(None)
    page = open_page()
    page.goto(app.url + "/")
    page.click("#palette details.cmd:has(.name:text-is('progress')) summary")
    page.click("form[data-command='progress'] button[type=submit]")
    progress = card(page, "progress", "exit 0")
    progress.locator("a.replay").click()
    replay_ready(page)
    screen = page.locator("[data-screen]")
    assert screen.inner_text().splitlines() == [
        "copying: 100%", "fresh", "FAILED abcd     end", "orange plain"]
    assert screen.locator(".c1.b").inner_text() == "FAILED"
    check_state(page, app.url, "replay-terminal")
