"""Fixtures for the chat page tests: the chat served for real (tests/support/chat.py), a
scripted Anthropic API, and headless Chromium (tests/support/browser.py)."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from agent.hosts.inventory import HostConfig
from agent.settings import Settings
from tests.support.browser import (
    CHROMIUM,
    CHROMIUM_ARGS,
    DESKTOP,
    PHONE,
    PageFactory,
    watch_console,
)
from tests.support.chat import EXTRA_CATALOG, ChatFactory, ServedChat, chat_options
from tests.support.components import missing
from tests.support.fake_anthropic import FakeAnthropic
from tests.support.sshd import login_writable
from whitelist import load_catalog


@pytest.fixture
def marker() -> Iterator[Path]:
    """A file the SSH login user may create (not under pytest's tmp_path)."""
    with login_writable("tnagent-chat-") as directory:
        yield directory / "marker"


@pytest.fixture
def catalog_file(tmp_path: Path, marker: Path) -> Path:
    path = tmp_path / "extra.yaml"
    path.write_text(EXTRA_CATALOG.replace("{marker}", str(marker)))
    return path


@pytest.fixture
def chat_app(ssh_host: HostConfig, catalog_file: Path) -> Iterator[ChatFactory]:
    """Start the app; `chat_app(fake)` with a scripted API, `chat_app(None)` without a key."""
    started: list[ServedChat] = []

    def start(fake: FakeAnthropic | None, **option_overrides: Any) -> ServedChat:
        settings = Settings(
            hosts={ssh_host.name: ssh_host},
            default_host=ssh_host.name,
            anthropic_api_key="sk-ant-test-not-a-real-key" if fake is not None else None,
            anthropic_model="claude-test",
            anthropic_base_url=fake.base_url if fake is not None else None,
        )
        served = ServedChat(settings, load_catalog([catalog_file]),
                            chat_options(**option_overrides)).start()
        started.append(served)
        return served

    yield start
    for served in started:
        served.stop()


@pytest.fixture
def fake_api() -> Iterator[Callable[..., FakeAnthropic]]:
    made: list[FakeAnthropic] = []

    def make(*args: Any, **kwargs: Any) -> FakeAnthropic:
        fake = FakeAnthropic(*args, **kwargs).start()
        made.append(fake)
        return fake

    yield make
    for fake in made:
        fake.stop()


# Module scope, not session: while Playwright's sync API runs, the main thread counts as
# inside an event loop, and pytest-asyncio's async tests in other modules could not run.
@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not os.access(CHROMIUM, os.X_OK):
        missing("Chromium", "apt-get install chromium (the tests never download a browser)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        missing("Playwright for Python", "pip install playwright (no browser download needed)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def open_page(browser: Any) -> Iterator[PageFactory]:
    """`open_page(viewport, scheme)`: a new browser context and page; `page.console_errors`
    collects console errors (CSP violations among them) and uncaught exceptions."""
    contexts: list[Any] = []

    def make(viewport: dict[str, int] = DESKTOP, scheme: str = "light", *,
             context: Any = None) -> Any:
        if context is None:
            context = browser.new_context(
                viewport=viewport, color_scheme=scheme, is_mobile=viewport == PHONE,
                has_touch=viewport == PHONE, device_scale_factor=1)
            contexts.append(context)
        return watch_console(context.new_page())

    yield make
    for context in contexts:
        context.close()


@pytest.fixture
def page(open_page: PageFactory) -> Any:
    return open_page()
