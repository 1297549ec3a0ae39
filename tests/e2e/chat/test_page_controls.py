"""The page's controls in Chromium: the keyboard alone, the theme toggle, copy buttons,
and the hosts panel's health check."""

from __future__ import annotations

from typing import Any

from tests.support.browser import DESKTOP, PHONE, TIMEOUT, PageFactory, card, check_state, wait_idle
from tests.support.chat import ChatFactory
from tests.support.fake_anthropic import FakeAnthropic, Step, Text, ToolUse


def focused(page: Any) -> str:
    """The focused element, as `tag#id.class "text"`."""
    described: str = page.evaluate("""() => {
        const e = document.activeElement;
        return e.tagName.toLowerCase() + (e.id ? '#' + e.id : '')
            + (e.className ? '.' + String(e.className).split(' ').join('.') : '')
            + ' "' + (e.innerText || e.value || '').trim().slice(0, 40) + '"';
    }""")
    return described


def tab_until(page: Any, want: str, limit: int = 80) -> list[str]:
    """Press Tab until the focused element's description contains `want`; the path taken."""
    path = []
    for _ in range(limit):
        page.keyboard.press("Tab")
        path.append(focused(page))
        if want in path[-1]:
            return path
    raise AssertionError(f"Tab never reached {want!r}: {path}")


def test_the_chat_works_from_the_keyboard_alone(
    chat_app: ChatFactory, fake_api: Any, open_page: PageFactory,
) -> None:
    fake: FakeAnthropic = fake_api([
        Step(when="remove the marker", reply=[
            ToolUse("execute_command", {"command": "remove_marker"})]),
        Step(when="declined", reply=[Text("Left alone.")]),
        Step(when="", reply=[Text(lambda request: "You said: " + str(
            request["messages"][-1]["content"]))]),
    ])
    app = chat_app(fake)
    page = open_page(DESKTOP)
    page.goto(app.url + "/")

    # The first Tab reaches the skip link; following it lands in the question box.
    page.keyboard.press("Tab")
    assert "skip" in focused(page)
    page.keyboard.press("Enter")
    assert focused(page).startswith("textarea#question")

    # Shift+Enter makes a new line, Enter sends.
    page.keyboard.type("first line")
    page.keyboard.press("Shift+Enter")
    page.keyboard.type("second line")
    assert page.input_value("#question") == "first line\nsecond line"
    page.keyboard.press("Enter")
    page.wait_for_selector("text=You said: first line", timeout=TIMEOUT)
    wait_idle(page, 1)
    assert page.input_value("#question") == ""

    # A confirmation takes the focus, on the quiet choice; Tab reaches the other one.
    page.focus("#question")
    page.keyboard.type("please remove the marker")
    page.keyboard.press("Enter")
    page.wait_for_selector(".confirm", timeout=TIMEOUT)
    page.wait_for_function("() => document.activeElement?.value === 'cancel'", timeout=TIMEOUT)
    page.keyboard.press("Tab")
    assert focused(page).startswith('button.danger "Run remove_marker"')
    # Stop is in the focus order too, after the confirmation.
    page.keyboard.press("Tab")
    assert "stop" in focused(page)
    page.keyboard.press("Shift+Tab")
    page.keyboard.press("Shift+Tab")
    page.keyboard.press("Enter")  # Cancel
    card(page, "remove_marker", "declined")
    page.wait_for_selector("text=Left alone.", timeout=TIMEOUT)

    # Every control has a visible focus ring.
    page.focus("#theme-toggle")
    page.keyboard.press("Shift+Tab")
    page.keyboard.press("Tab")
    outline = page.evaluate(
        "getComputedStyle(document.activeElement).outlineStyle + ' '"
        " + getComputedStyle(document.activeElement).outlineWidth")
    assert outline.startswith("solid") and not outline.endswith(" 0px"), outline

    # Landmarks and labels: a banner, one main, the side panel; every field has a name.
    assert page.locator("header.top").evaluate("e => e.closest('main, aside') === null")
    assert page.locator("main").count() == 1
    assert page.locator("aside[aria-label]").count() == 1
    assert page.locator("#log[role=log][aria-label]").count() == 1
    unnamed = page.evaluate("""() => [...document.querySelectorAll('input, select, textarea')]
        .filter(e => e.type !== 'hidden' && !e.labels?.length && !e.getAttribute('aria-label'))
        .map(e => e.outerHTML)""")
    assert not unnamed, unnamed
    # The whole walk through the page by Tab passes the question box, the hosts and
    # the palette, in that order.
    page.focus("#question")
    path = tab_until(page, "palette-q")
    assert any("Check" in step for step in path), path


def test_the_theme_follows_the_system_and_the_toggle_is_remembered(
    chat_app: ChatFactory, open_page: PageFactory,
) -> None:
    app = chat_app(None)
    page = open_page(PHONE, "dark")
    page.goto(app.url + "/")

    def background() -> str:
        value: str = page.evaluate("getComputedStyle(document.body).backgroundColor")
        return value

    dark = background()
    assert page.get_attribute("#theme-toggle", "aria-pressed") == "true"
    page.click("#theme-toggle")
    assert page.get_attribute("#theme-toggle", "aria-pressed") == "false"
    light = background()
    assert light != dark
    # Remembered across a reload, and applied before the page is drawn (no flash).
    page.reload()
    assert page.evaluate("document.documentElement.dataset.theme") == "light"
    assert background() == light
    check_state(page, app.url, "toggle-light-on-a-dark-system")
    page.click("#theme-toggle")
    page.reload()
    assert background() == dark


def test_copy_buttons_copy_the_command_the_output_and_code_blocks(
    chat_app: ChatFactory, fake_api: Any, browser: Any, open_page: PageFactory,
) -> None:
    fake = fake_api([
        Step(when="line-1", reply=[Text("Run it yourself:\n\n```sh\nseq -f line-%g 2\n```")]),
        Step(when="count", reply=[ToolUse("execute_command", {
            "command": "count_lines", "parameters": {"count": 2}})]),
    ])
    app = chat_app(fake)
    context = browser.new_context(viewport=DESKTOP)
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=app.url)
    page = open_page(context=context)
    try:
        page.goto(app.url + "/")
        page.fill("#question", "count two lines")
        page.press("#question", "Enter")
        lines = card(page, "count_lines", "exit 0")
        page.wait_for_selector(".msg.assistant .code", timeout=TIMEOUT)
        wait_idle(page, 1)

        def copied(button: Any) -> str:
            button.click()
            page.wait_for_function("b => b.textContent === 'Copied'", arg=button.element_handle())
            text: str = page.evaluate("navigator.clipboard.readText()")
            return text

        assert copied(lines.locator(".cmdline button.copy")) == "seq -f line-%g 2"
        assert copied(lines.locator(".output button.copy")) == "line-1\nline-2\n"
        code = page.locator(".msg.assistant .code button.copy")
        assert copied(code) == "seq -f line-%g 2\n"
        assert not page.console_errors, page.console_errors
    finally:
        context.close()


def test_the_hosts_panel_checks_a_host_through_the_policy_path(
    chat_app: ChatFactory, open_page: PageFactory,
) -> None:
    app = chat_app(None)
    page = open_page(DESKTOP)
    page.goto(app.url + "/")
    row = page.locator("#hosts .host-row")
    assert row.count() == 1
    assert "test" in row.inner_text() and "default" in row.inner_text()
    assert "not checked yet" in row.inner_text()
    row.locator("button", has_text="Check").click()
    result = row.locator(".check-result")
    result.wait_for(timeout=TIMEOUT)
    assert "answers over SSH" in result.inner_text() and "ms" in result.inner_text()
    assert "load average" in row.locator(".check-detail").inner_text()
    assert row.locator(".host-state.online").inner_text() == "answers"
    check_state(page, app.url, "hosts-panel-checked")
    # The check ran the catalog's uptime as this caller, like any call.
    audit = app.service.audit.path.read_text()
    assert '"command":"uptime"' in audit.replace(" ", "")
