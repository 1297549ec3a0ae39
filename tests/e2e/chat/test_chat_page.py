"""The chat page end to end: headless Chromium, the agent's app, a real sshd, a scripted API."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.support.browser import TIMEOUT, ask, card, wait_idle
from tests.support.chat import ChatFactory
from tests.support.fake_anthropic import (
    ApiError,
    FakeAnthropic,
    Step,
    Text,
    ToolUse,
    last_tool_output,
    last_user_text,
    tool_results,
)


def disk_script() -> list[Step]:
    return [
        Step(when="how full is the disk", reply=[Text("Let me check the disk."),
                                                 ToolUse("check_disk", {})]),
        Step(when="Filesystem", reply=[Text(
            lambda request: "Here is the disk usage:\n\n```\n" + last_tool_output(request)
            + "```\n\nThe root filesystem is **fine**, with room to spare.",
            chunk=4,
        )]),
    ]


def test_disk_question_runs_df_over_ssh_and_streams_the_answer(
    chat_app: ChatFactory, fake_api: Any, page: Any
) -> None:
    fake: FakeAnthropic = fake_api(disk_script(), delay=0.01)
    app = chat_app(fake)
    page.goto(app.url + "/")
    assert "local" in page.inner_text("header .facts")

    ask(page, "how full is the disk?")

    # Streaming: the answer's first words are on the page before the answer is complete.
    page.wait_for_selector(".msg.assistant.streaming", timeout=TIMEOUT)
    disk = card(page, "disk_usage", "exit 0")
    page.wait_for_selector("text=with room to spare", timeout=TIMEOUT)
    wait_idle(page, 1)

    summary = disk.inner_text()
    assert "ms" in summary and "df" in summary and disk.get_attribute("data-tool") == "check_disk"
    output = disk.locator("pre.out").inner_text()
    assert "Filesystem" in output and "Use%" in output

    # The model really received df's output from the real sshd as the tool_result.
    results = tool_results(fake.requests[-1])
    assert len(results) == 1
    received = json.loads(results[0]["content"])
    assert received["command"] == "disk_usage" and received["exit_status"] == 0
    assert "Filesystem" in received["stdout"]
    # ... and the answer quoting it is rendered Markdown (a code block, bold text).
    assert page.locator(".msg.assistant.md pre").count() == 1
    assert page.locator(".msg.assistant.md strong", has_text="fine").count() == 1

    # Tools came from our MCP server, converted for the API; the system prompt has the catalog.
    first = fake.requests[0]
    names = {tool["name"] for tool in first["tools"]}
    assert {"check_disk", "execute_command", "system_overview", "list_hosts"} <= names
    assert "disk_usage" in first["system"] and "DESTRUCTIVE" in first["system"]
    assert first["stream"] is True and first["model"] == "claude-test"

    assert not page.console_errors, page.console_errors

    # A reload shows the same conversation from the history.
    page.reload()
    assert page.locator(".card[data-tool=check_disk]").count() == 1
    assert page.locator("text=with room to spare").count() == 1


def test_script_in_command_output_and_model_text_is_shown_as_text(
    chat_app: ChatFactory, fake_api: Any, page: Any
) -> None:
    fake = fake_api([
        Step(when="window.__pwned=1", reply=[Text(
            lambda request: "The output was: " + last_tool_output(request)
            + "\n\n<script>window.__pwned=3</script> <b onclick=x>bold?</b> "
            "[link](javascript:window.__pwned=4)"
        )]),
        Step(when="script", reply=[ToolUse("execute_command", {"command": "say_script"})]),
    ])
    app = chat_app(fake)
    page.goto(app.url + "/")
    ask(page, "print the script test")
    said = card(page, "say_script", "exit 0")
    page.wait_for_selector("text=The output was", timeout=TIMEOUT)
    wait_idle(page, 1)

    assert "<script>window.__pwned=1</script>" in said.inner_text()
    answer = page.locator(".msg.assistant.md").last.inner_text()
    assert "<script>window.__pwned=3</script>" in answer
    assert "<b onclick=x>" in answer
    assert page.evaluate("window.__pwned") is None
    assert page.locator("#log script, #log img, #log [onclick], #log [onerror]").count() == 0
    assert page.locator("#log a[href^='javascript']").count() == 0
    # Reloaded from history, still text.
    page.reload()
    assert page.evaluate("window.__pwned") is None
    assert page.locator("#log script, #log img").count() == 0


def test_cross_site_posts_are_refused_and_run_nothing(
    chat_app: ChatFactory, page: Any, browser: Any, marker: Path
) -> None:
    app = chat_app(None)
    form = {"command": "touch_marker"}

    # A request that says it comes from another site, or from a sibling site.
    for site in ("cross-site", "same-site"):
        response = page.request.post(app.url + "/chat/run", form=form,
                                     headers={"Sec-Fetch-Site": site})
        assert response.status == 403, site
    # No Sec-Fetch-Site (an old browser) and no token.
    response = page.request.post(app.url + "/chat/run", form=form)
    assert response.status == 403
    for path in ("/chat/send", "/chat/new", "/chat/confirm/x", "/chat/run/x", "/chat/stop/x",
                 "/chat/hosts/check"):
        response = page.request.post(app.url + path, form={"message": "hi"},
                                     headers={"Sec-Fetch-Site": "cross-site"})
        assert response.status == 403, path
    response = page.request.get(app.url + "/chat/stream/x",
                                headers={"Sec-Fetch-Site": "cross-site"})
    assert response.status == 403

    # A real page on another origin (localhost vs 127.0.0.1) posting a form to the agent.
    evil = browser.new_context()
    attacker = evil.new_page()
    attacker.route("http://localhost:9/evil", lambda route: route.fulfill(
        content_type="text/html",
        body=f'<form method="post" action="{app.url}/chat/run">'
             '<input name="command" value="touch_marker"></form>',
    ))
    attacker.goto("http://localhost:9/evil")
    with attacker.expect_response(app.url + "/chat/run") as posted:
        attacker.evaluate("document.forms[0].submit()")
    assert posted.value.status == 403
    evil.close()
    assert not marker.exists(), "a refused POST ran the command"

    # The page's own token (for browsers without Sec-Fetch-Site) is accepted.
    page.goto(app.url + "/")
    headers = json.loads(page.get_attribute("body", "hx-headers"))
    response = page.request.post(app.url + "/chat/run", form=form, headers=headers)
    assert response.status == 200
    assert marker.exists()


def test_without_a_key_the_palette_runs_commands(
    chat_app: ChatFactory, page: Any
) -> None:
    app = chat_app(None)
    page.goto(app.url + "/")
    assert "ANTHROPIC_API_KEY" in page.inner_text("main")
    assert page.locator("#ask").count() == 0

    page.click("#palette details.cmd:has(.name:text-is('disk_usage')) summary")
    page.click("form[data-command='disk_usage'] button[type=submit]")
    assert "Filesystem" in card(page, "disk_usage", "exit 0").inner_text()

    # Fields come from the parameters: enum -> select, integer -> number with its range.
    form = page.locator("form[data-command='count_lines']")
    page.click("#palette details.cmd:has(.name:text-is('count_lines')) summary")
    number = form.locator("input[type=number][name='p.count']")
    assert number.get_attribute("min") == "1" and number.get_attribute("max") == "50"
    assert number.input_value() == "3"
    number.fill("4")
    form.locator("select[name='p.style']").select_option("row-%g")
    form.locator("button[type=submit]").click()
    page.wait_for_selector("pre.out:has-text('row-4')", timeout=TIMEOUT)
    assert not page.console_errors, page.console_errors


def test_destructive_command_in_the_palette_needs_a_confirmation(
    chat_app: ChatFactory, page: Any, marker: Path
) -> None:
    marker.touch()
    marker.chmod(0o666)
    app = chat_app(None)
    page.goto(app.url + "/")
    page.click("#palette details.cmd:has(.name:text-is('remove_marker')) summary")
    page.click("form[data-command='remove_marker'] button[type=submit]")
    confirm = page.wait_for_selector(".confirm", timeout=TIMEOUT)
    assert f"rm -f -- {marker}" in confirm.inner_text()
    assert marker.exists()
    # The quiet choice has the focus; the destructive one is red and names the command.
    page.wait_for_function("() => document.activeElement?.value === 'cancel'", timeout=TIMEOUT)
    assert page.get_attribute(".confirm button[value=confirm]", "class") == "danger"
    assert page.inner_text(".confirm button[value=confirm]") == "Run remove_marker"
    page.click(".confirm button[value=cancel]")
    card(page, "remove_marker", "declined")
    assert marker.exists()

    page.click("form[data-command='remove_marker'] button[type=submit]")
    page.wait_for_selector(".confirm", timeout=TIMEOUT)
    page.click(".confirm button[value=confirm]")
    card(page, "remove_marker", "exit 0")
    assert not marker.exists()


def test_destructive_command_in_chat_waits_for_the_click(
    chat_app: ChatFactory, fake_api: Any, page: Any, marker: Path
) -> None:
    marker.touch()
    marker.chmod(0o666)
    fake = fake_api([
        Step(when="remove the marker", reply=[
            Text("I will remove it."), ToolUse("execute_command", {"command": "remove_marker"})]),
        Step(when="declined", reply=[Text("Understood, I left the marker alone.")]),
        Step(when="exit_status", reply=[Text("Done: the marker is gone.")]),
    ])
    app = chat_app(fake)
    page.goto(app.url + "/")

    ask(page, "please remove the marker")
    page.wait_for_selector(".confirm", timeout=TIMEOUT)
    assert marker.exists()
    page.click(".confirm button[value=cancel]")
    page.wait_for_selector("text=left the marker alone", timeout=TIMEOUT)
    wait_idle(page, 1)
    assert marker.exists()
    declined = tool_results(fake.requests[-1])[-1]
    assert declined["is_error"] is True and "declined" in declined["content"]

    ask(page, "please remove the marker now")
    confirm = page.wait_for_selector(".confirm", timeout=TIMEOUT)
    assert "rm -f --" in confirm.inner_text()
    page.click(".confirm button[value=confirm]")
    page.wait_for_selector("text=the marker is gone", timeout=TIMEOUT)
    assert not marker.exists()
    assert page.locator(".card[data-tool=execute_command] .badge", has_text="exit 0").count() == 1


def test_api_errors_are_retried_or_explained_and_the_conversation_survives(
    chat_app: ChatFactory, fake_api: Any, page: Any
) -> None:
    fake = fake_api([
        # Overloaded more often than the SDK retries (1 here): our own retry gets through.
        Step(when="overloaded", reply=ApiError(529, "overloaded_error", "Overloaded"), times=3),
        Step(when="overloaded", reply=[Text("Answer after the overload.")]),
        Step(when="rate", reply=ApiError(429, "rate_limit_error", "Too many requests",
                                         retry_after=0)),
        Step(when="bad key", reply=ApiError(401, "authentication_error", "invalid x-api-key")),
        Step(when="", reply=[Text("Still here.")]),
    ])
    app = chat_app(fake)
    page.goto(app.url + "/")

    ask(page, "overloaded?")
    page.wait_for_selector("text=Answer after the overload.", timeout=TIMEOUT)
    wait_idle(page, 1)
    # 2 tries by the SDK (max_retries=1), a third and the fourth by our own retry.
    assert sum(last_user_text(r) == "overloaded?" for r in fake.requests) == 4

    ask(page, "rate limited?")
    page.wait_for_selector(".msg.error:has-text('429')", timeout=TIMEOUT)
    wait_idle(page, 2)

    ask(page, "bad key?")
    error = page.wait_for_selector(".msg.error:has-text('401')", timeout=TIMEOUT)
    assert "ANTHROPIC_API_KEY" in error.inner_text()
    assert "sk-ant-test" not in page.content()
    wait_idle(page, 3)

    ask(page, "are you still there?")
    page.wait_for_selector("text=Still here.", timeout=TIMEOUT)
    # Every question is still in the history Claude gets, and it is a valid one.
    messages = fake.requests[-1]["messages"]
    roles = [m["role"] for m in messages]
    assert roles == ["user", "assistant"] * 3 + ["user"]
    questions = [m["content"] for m in messages if m["role"] == "user"]
    assert questions == ["overloaded?", "rate limited?", "bad key?", "are you still there?"]

    page.reload()
    assert page.locator(".msg.user").count() == 4
    assert page.locator(".msg.error").count() == 2

    # New chat forgets it all.
    page.click("#new-chat")
    page.wait_for_function("() => document.querySelectorAll('.msg.user').length === 0")
