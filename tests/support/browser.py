"""Driving the chat page in Chromium, and checking each state of it: a screenshot under
test-artifacts/, axe-core's accessibility audit, no console errors, no sideways scroll.

The browser itself is the `browser` fixture (tests/e2e/chat/conftest.py): the system's
Chromium (never downloaded) under Playwright's sync API.

axe-core comes from the npm registry (`make axe`, pinned in package-lock.json here) and
is injected into the page under test only: Playwright's add_script_tag loads it from a
URL on the page's own origin that the browser answers itself (page.route), so the
page's strict CSP (script-src 'self') stays as it is and the agent never serves it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.support.artifacts import ARTIFACTS, update_json
from tests.support.components import missing

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
# The sizes the page is tested at: a laptop and a phone (iPhone 12-15 class).
DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}
# `open_page(viewport, scheme)` (the fixture in tests/e2e/chat/conftest.py).
PageFactory = Callable[..., Any]

AXE = (Path(__file__).resolve().parents[1] / "e2e" / "chat" / "node_modules" / "axe-core"
       / "axe.min.js")
AXE_URL = "/__test-only__/axe.min.js"
TIMEOUT = 15_000  # ms

# Every state's axe result, written to test-artifacts/axe-summary.json as tests go.
AXE_SUMMARY: dict[str, dict[str, int]] = {}


def axe_source() -> Path:
    if not AXE.is_file():
        missing("axe-core (npm)", "make axe (npm ci in tests/e2e/chat)")
    return AXE


def watch_console(page: Any) -> Any:
    """`page` with `page.console_errors`: the console errors (CSP violations among them) and
    uncaught exceptions it meets."""
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(f"uncaught: {e}"))
    page.console_errors = errors
    return page


def ask(page: Any, question: str) -> None:
    page.fill("#question", question)
    page.press("#question", "Enter")


def wait_idle(page: Any, turns: int) -> None:
    """Wait until `turns` turns are on the page and none is still running."""
    page.wait_for_function(
        "n => document.querySelectorAll('.turn').length === n"
        " && document.querySelectorAll('.turn-status').length === 0",
        arg=turns, timeout=TIMEOUT)


def card(page: Any, title: str, status: str | None = None) -> Any:
    selector = f"article.card:has(.title:text-is('{title}'))"
    if status is not None:
        selector += f":has(.badge:text-is('{status}'))"
    found = page.locator(selector).last
    found.wait_for(timeout=TIMEOUT)
    return found


def run_axe(page: Any, base_url: str) -> list[dict[str, Any]]:
    if not page.evaluate("typeof window.axe !== 'undefined'"):
        page.route(base_url + AXE_URL, lambda route: route.fulfill(
            path=str(axe_source()), content_type="text/javascript"))
        page.add_script_tag(url=base_url + AXE_URL)
    violations: list[dict[str, Any]] = page.evaluate("""async () => {
        const result = await axe.run(document, {resultTypes: ['violations']});
        return result.violations.map(v => ({
            id: v.id, impact: v.impact, help: v.help,
            nodes: v.nodes.slice(0, 5).map(n => n.target.join(' ') + ': ' + n.failureSummary)}));
    }""")
    return violations


def page_overflow(page: Any) -> int:
    overflow: int = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    return overflow


def check_state(page: Any, base_url: str, name: str) -> None:
    """Screenshot the state, then assert: no serious or critical axe finding, no console
    error (a CSP violation is one), and a page no wider than the screen."""
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"))
    violations = run_axe(page, base_url)
    counts = {impact: sum(v["impact"] == impact for v in violations)
              for impact in ("critical", "serious", "moderate", "minor")}
    AXE_SUMMARY[name] = counts
    update_json(ARTIFACTS / "axe-summary.json", name, counts)
    serious = [v for v in violations if v["impact"] in ("serious", "critical")]
    assert not serious, f"{name}: axe finds\n" + json.dumps(serious, indent=1)
    assert not page.console_errors, f"{name}: console errors {page.console_errors}"
    assert page_overflow(page) <= 0, f"{name}: the page scrolls sideways"


def document_status_only(page: Any, status: int) -> None:
    """A page served with an error status on purpose (a refusal, something unknown): the
    browser logs that status as a console error. Check it is the only one, then forget it
    so that check_state looks for any other."""
    expected = f"Failed to load resource: the server responded with a status of {status} "
    assert [e for e in page.console_errors if not e.startswith(expected)] == []
    assert len(page.console_errors) == 1, page.console_errors
    page.console_errors.clear()


RAW_MARKDOWN = re.compile(r"\*\*|__|~~|`|^\s*#|\||\]\(", re.MULTILINE)


def watch_streaming_text(page: Any) -> None:
    """Record the text of every answer block each time it changes while it streams."""
    page.evaluate("""() => {
        window.__seen = [];
        new MutationObserver(() => {
            for (const block of document.querySelectorAll('.msg.assistant.streaming')) {
                const copy = block.cloneNode(true);
                copy.querySelectorAll('pre, code, button').forEach(e => e.remove());
                window.__seen.push(copy.innerText);
            }
        }).observe(document.getElementById('log'),
                   {childList: true, subtree: true, characterData: true});
    }""")


def raw_markdown_seen(page: Any) -> list[str]:
    seen: list[str] = page.evaluate("window.__seen")
    return [text for text in seen if RAW_MARKDOWN.search(text)]
