"""Every state of the chat page, on a laptop and a phone, in light and dark: what it
does, what it looks like (test-artifacts/<size>-<theme>-NN-<state>.png), axe-core's
audit (no serious or critical finding), no console error, no sideways scroll."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

from tests.support.browser import (
    DESKTOP,
    PHONE,
    TIMEOUT,
    PageFactory,
    ask,
    card,
    check_state,
    raw_markdown_seen,
    wait_idle,
    watch_streaming_text,
)
from tests.support.chat import ChatFactory
from tests.support.fake_anthropic import FakeAnthropic, Step, Text, ToolUse, last_tool_output

TABLE_ANSWER = """\
## Disk usage on **test**

The root filesystem is *fine*: `/` is at **20%**, with plenty of room.

| Filesystem | Mounted on | Size | Used | Use% |
|:-----------|:-----------|-----:|-----:|-----:|
| /dev/vda1 | / | 252G | 18G | 20% |
| tmpfs | /dev/shm | 24G | 0 | 0% |
| /dev/vdb1 | /var/lib/docker/overlay2 | 1.8T | 1.2T | 67% |

To look again yourself:

```sh
df -h -- /
```
"""

STORY = ("Here is a longer answer that streams slowly, with **bold words**, `code` and a list:\n\n"
         "- first point about the **load average**\n- second point about *memory*\n\n"
         "And a last paragraph that closes the answer.")


def script(table_gate: threading.Event, story_gate: threading.Event) -> list[Step]:
    return [
        Step(when="how full are the disks", reply=[
            Text("Let me check the disks."), ToolUse("check_disk", {})]),
        Step(when="Filesystem", reply=[Text(
            lambda request: "Here is `df -h`:\n\n```\n" + last_tool_output(request)
            + "```\n\nThe root filesystem is **fine**.", chunk=12)]),
        Step(when="show me a table", reply=[
            Text(TABLE_ANSWER, chunk=5, hold=table_gate, hold_after=40)]),
        Step(when="remove the marker", reply=[
            Text("This deletes the marker file."),
            ToolUse("execute_command", {"command": "remove_marker"})]),
        Step(when="declined", reply=[Text("Understood: I left the marker alone.")]),
        Step(when="exit_status", reply=[Text("Done: the marker is **gone**.")]),
        Step(when="sleep for a while", reply=[
            Text("Sleeping, as asked."), ToolUse("execute_command", {"command": "sleep_long"})]),
        Step(when="tell me a story", reply=[
            Text(STORY, chunk=4, hold=story_gate, hold_after=20)]),
    ]


COMBOS = [
    pytest.param(DESKTOP, "light", id="desktop-light"),
    pytest.param(DESKTOP, "dark", id="desktop-dark"),
    pytest.param(PHONE, "light", id="phone-light"),
    pytest.param(PHONE, "dark", id="phone-dark"),
]


@pytest.mark.parametrize(("viewport", "scheme"), COMBOS)
def test_every_state_of_the_chat(
    chat_app: ChatFactory, fake_api: Any, open_page: PageFactory, marker: Path,
    viewport: dict[str, int], scheme: str, request: pytest.FixtureRequest,
) -> None:
    combo = request.node.callspec.id
    marker.touch()
    marker.chmod(0o666)
    table_gate, story_gate = threading.Event(), threading.Event()
    fake: FakeAnthropic = fake_api(script(table_gate, story_gate), delay=0.005)
    app = chat_app(fake)
    page = open_page(viewport, scheme)
    state = iter(range(1, 100))

    def check(name: str) -> None:
        check_state(page, app.url, f"{combo}-{next(state):02d}-{name}")

    # 1. Empty: what the agent can do, and questions to start from.
    page.goto(app.url + "/")
    assert page.locator("#empty").is_visible()
    examples = page.locator(".example")
    assert examples.count() >= 3
    assert "on test" in examples.first.inner_text()
    assert "whitelisted commands" in page.inner_text("#empty")
    assert "local" in page.inner_text("header .facts")
    check("empty")

    # 2. An example question runs a tool: the card shows command, host, status and time.
    examples.first.click()
    disk = card(page, "disk_usage", "exit 0")
    wait_idle(page, 1)
    assert not page.locator("#empty").is_visible()
    assert "on test" in disk.inner_text() and "ms" in disk.inner_text()
    assert disk.locator("code.cmd").inner_text().startswith("df")
    assert disk.locator("details.output[open] pre.out").inner_text().startswith("Filesystem")
    assert disk.locator("button.copy").count() == 2  # the command and the output
    assert page.locator(".msg.assistant .code button.copy").count() == 1
    check("tool-card")

    # 3. Streaming: Markdown renders as it arrives, never as raw syntax.
    watch_streaming_text(page)
    ask(page, "show me a table of the disks")
    streaming = page.locator(".msg.assistant.streaming")
    streaming.wait_for(timeout=TIMEOUT)
    page.wait_for_function(
        "() => document.querySelector('.msg.assistant.streaming strong')", timeout=TIMEOUT)
    assert streaming.get_attribute("aria-busy") == "true"
    assert "writing" in page.inner_text(".turn-status")
    check("streaming")
    table_gate.set()
    wait_idle(page, 2)
    assert not raw_markdown_seen(page), raw_markdown_seen(page)

    # 4. The answer with a table: alignment by class (no inline style, no CSP error),
    # a table that scrolls sideways inside its box on a phone.
    answer = page.locator(".msg.assistant.md").last
    assert answer.locator("th.align-right").count() == 3
    assert answer.locator("td.align-right").count() == 9
    assert page.locator("#log [style]").count() == 0
    wrap = answer.locator(".table-wrap")
    if viewport == PHONE:
        assert wrap.evaluate("e => e.scrollWidth > e.clientWidth"), "the table squeezes"
    wrap.scroll_into_view_if_needed()
    check("table")

    # 5. A destructive command waits for a click; Cancel is the quiet default.
    ask(page, "please remove the marker")
    confirm = page.locator(".confirm")
    confirm.wait_for(timeout=TIMEOUT)
    cancel, run = confirm.locator("button[value=cancel]"), confirm.locator("button[value=confirm]")
    assert "quiet" in (cancel.get_attribute("class") or "")
    assert "danger" in (run.get_attribute("class") or "")
    assert run.inner_text() == "Run remove_marker"
    assert f"rm -f -- {marker}" in confirm.inner_text()
    # htmx moves focus to [autofocus] when the swap settles (20 ms after it lands).
    page.wait_for_function("() => document.activeElement?.value === 'cancel'",
                           timeout=TIMEOUT)
    assert "Waiting for you" in page.inner_text(".turn-status")
    assert marker.exists()
    check("confirm")

    # 6. A reload brings the pending confirmation back, not "still answering".
    page.reload()
    page.locator(".confirm button[value=confirm]").wait_for(timeout=TIMEOUT)
    assert "Waiting for you" in page.inner_text(".turn-status")
    assert page.locator(".msg.user").last.inner_text().endswith("\nplease remove the marker")
    check("reload-mid-confirm")

    # 7. Confirmed: it runs, the card says so, Claude answers.
    page.click(".confirm button[value=confirm]")
    removed = card(page, "remove_marker", "exit 0")
    page.wait_for_selector("text=the marker is gone", timeout=TIMEOUT)
    wait_idle(page, 1)  # the reload left one turn element on the page
    assert not marker.exists()
    assert page.locator(".confirm").count() == 0
    removed.scroll_into_view_if_needed()
    check("confirmed")

    # 8. Declined: nothing runs, the card says so.
    marker.touch()
    marker.chmod(0o666)
    ask(page, "remove the marker once more")
    page.click(".confirm button[value=cancel]")
    card(page, "remove_marker", "declined")
    page.wait_for_selector("text=left the marker alone", timeout=TIMEOUT)
    wait_idle(page, 2)
    assert marker.exists()
    check("declined")

    # 9. Stop: the turn ends, and the command it was running with it.
    ask(page, "sleep for a while")
    card(page, "sleep_long", "running")
    page.click(".turn-status button.stop")
    stopped = card(page, "sleep_long", "stopped")
    page.wait_for_selector("text=You stopped this turn", timeout=TIMEOUT)
    wait_idle(page, 3)
    assert "cancelled" in stopped.inner_text()
    check("stop")

    # 10. A reload in the middle of an answer picks the stream up where it is.
    ask(page, "tell me a story")
    page.locator(".msg.assistant.streaming").wait_for(timeout=TIMEOUT)
    page.reload()
    partial = page.locator(".msg.assistant.streaming")
    partial.wait_for(timeout=TIMEOUT)
    assert partial.inner_text().startswith("Here is a longer answer")
    assert "writing" in page.inner_text(".turn-status")
    check("reload-mid-turn")
    story_gate.set()
    page.wait_for_selector("text=closes the answer", timeout=TIMEOUT)
    wait_idle(page, 1)

    # 11. The palette, beside the chat: search, run, the result under its form.
    search = page.locator("#palette-q")
    search.scroll_into_view_if_needed()
    search.fill("count lines")
    visible = page.locator("#palette-list details.cmd:visible")
    assert visible.count() == 1
    assert "1 command matches" in page.inner_text("#palette-matches")
    command = page.locator("details.cmd:has(.name:text-is('count_lines'))")
    command.locator("summary").click()
    run_button = command.locator("button[type=submit]")
    run_button.scroll_into_view_if_needed()
    before = page.evaluate("window.scrollY")
    run_button.click()
    result = card(page, "count_lines", "exit 0")
    assert "on test" in result.inner_text()
    assert result.locator("details.output[open] pre.out").inner_text().startswith("line-1")
    assert abs(page.evaluate("window.scrollY") - before) < 200, "the page jumped"
    assert result.is_visible()
    check("palette-search-run")


@pytest.mark.parametrize(("viewport", "scheme"), COMBOS)
def test_every_state_without_an_api_key(
    chat_app: ChatFactory, open_page: PageFactory, viewport: dict[str, int], scheme: str,
    request: pytest.FixtureRequest,
) -> None:
    combo = request.node.callspec.id
    app = chat_app(None)
    page = open_page(viewport, scheme)

    # 12. No API key: palette mode, said calmly, with the palette in the middle.
    page.goto(app.url + "/")
    assert "palette mode" in page.inner_text("header").lower()
    assert page.locator("#question").count() == 0
    assert page.locator("main #palette").count() == 1
    assert page.locator(".notice.calm").is_visible()
    assert page.locator(".msg.error").count() == 0
    check_state(page, app.url, f"{combo}-12-no-api-key")

    page.fill("#palette-q", "disk")
    shown = page.locator("#palette-list details.cmd:visible .name").all_inner_texts()
    assert "disk_usage" in shown and "disk_usage_path" in shown
    assert "memory_usage" not in shown and len(shown) < 6
    command = page.locator("details.cmd:has(.name:text-is('disk_usage'))")
    command.locator("summary").click()
    command.locator("button[type=submit]").click()
    result = card(page, "disk_usage", "exit 0")
    assert "on test" in result.inner_text()
    assert result.locator("details.output[open]").count() == 1
    assert result.is_visible()
    check_state(page, app.url, f"{combo}-13-no-api-key-palette-run")
