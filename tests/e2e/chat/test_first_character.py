"""How soon the first turn's first character is on the page: measured from the scripted
API's own timestamps to the moment Chromium shows the character (both read the same
machine clock). The figures go to test-artifacts/first-character.json."""

from __future__ import annotations

import json
import time
from typing import Any

from agent.chat import warmup
from tests.support.artifacts import ARTIFACTS
from tests.support.browser import TIMEOUT, PageFactory, wait_idle
from tests.support.chat import ChatFactory
from tests.support.fake_anthropic import FakeAnthropic, Step, Text

# The bound: the first character within 300 ms of the model's first event.
BOUND_MS = 300


def test_the_first_character_of_the_first_turn_follows_the_models_first_event(
    chat_app: ChatFactory, fake_api: Any, open_page: PageFactory,
) -> None:
    fake: FakeAnthropic = fake_api([Step(reply=[Text("Hello! The disks are fine.", chunk=3)])],
                                   delay=0.02)
    app = chat_app(fake)
    # The agent warms the SDK up in the background once it is built; a person opens the
    # page and types a question in the meantime.
    warmup.start().result(timeout=120)
    page = open_page()
    page.goto(app.url + "/")
    page.evaluate("""() => {
        window.__firstCharacter = null;
        new MutationObserver(() => {
            if (window.__firstCharacter === null &&
                    [...document.querySelectorAll('.msg.assistant')].some(e => e.innerText.trim()))
                window.__firstCharacter = performance.timeOrigin + performance.now();
        }).observe(document.getElementById('log'),
                   {childList: true, subtree: true, characterData: true});
    }""")
    page.fill("#question", "how are the disks?")
    asked = time.time()
    page.press("#question", "Enter")
    page.wait_for_selector("text=The disks are fine.", timeout=TIMEOUT)
    wait_idle(page, 1)

    shown = page.evaluate("window.__firstCharacter") / 1000
    first_event = fake.sent[0][0]  # message_start
    first_text = next(t for t, kind in fake.sent if kind == "content_block_delta")
    figures = {
        "model_first_event_to_first_character_ms": round((shown - first_event) * 1000, 1),
        "model_first_text_delta_to_first_character_ms": round((shown - first_text) * 1000, 1),
        "question_sent_to_model_request_ms": round((first_event - asked) * 1000, 1),
        "question_sent_to_first_character_ms": round((shown - asked) * 1000, 1),
    }
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "first-character.json").write_text(json.dumps(figures, indent=1))
    print(figures)
    assert figures["model_first_event_to_first_character_ms"] < BOUND_MS, figures
    assert not page.console_errors, page.console_errors
