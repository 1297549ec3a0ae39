"""The chat page served for real: the agent's app (build_agent) on 127.0.0.1 with the chat
routes, a real sshd behind it, a scripted Anthropic API, and headless Chromium.

The server runs in its own thread and event loop, so tests drive Chromium with
Playwright's sync API from the test thread.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import fields, replace
from pathlib import Path
from typing import Any

import pytest
import uvicorn

from agent.access.identity import local_user_identity
from agent.app import build_agent
from agent.chat import ChatOptions
from agent.chat.agent_loop import LoopOptions
from agent.hosts.inventory import HostConfig
from agent.settings import Settings
from agent.web.middleware.host_origin import LOOPBACK_NAMES
from agent.web.middleware.identity import fixed_resolver
from tests.e2e.chat.helpers import watch_console
from tests.support.components import missing
from tests.support.fake_anthropic import FakeAnthropic
from whitelist import Catalog, load_catalog

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]

# Test-only commands, loaded after the default catalog like an operator's extra file.
EXTRA_CATALOG = """\
commands:
  say_script:
    description: Print an HTML script tag (test command).
    category: Test
    template: >-
      printf '%s\\n' '<script>window.__pwned=1</script>'
      '<img src=x onerror="window.__pwned=2">'
  touch_marker:
    description: Create the test marker file.
    category: Test
    template: "touch {marker}"
  remove_marker:
    description: Delete the test marker file (test command, destructive).
    category: Test
    destructive: true
    template: "rm -f -- {marker}"
  sleep_long:
    description: Sleep for half a minute (test command for stopping a turn).
    category: Test
    template: "sleep 31.25"
    timeout: 60
  slow_report:
    description: Print a report over 1.5 s, with colour and a warning on stderr (test command).
    category: Test
    template: >-
      for i in 1 2 3 4 5; do echo "step $i of 5: ok"; sleep 0.3; done;
      printf '\\033[32mall good\\033[0m, key AKIAIOSFODNN7EXAMPLE\\n';
      echo 'warning: low disk' >&2
  count_lines:
    description: Print N numbered lines in a given style (test command for the palette).
    category: Test
    template: "seq -f {style} {count}"
    parameters:
      count:
        type: integer
        description: How many lines
        default: 3
        minimum: 1
        maximum: 50
      style:
        type: enum
        description: printf style of each line
        default: "line-%g"
        choices: ["line-%g", "row-%g"]
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class ServedChat:
    """The agent's app (build_agent, as `serve --local`) under uvicorn in a background thread."""

    def __init__(self, settings: Settings, catalog: Catalog, options: ChatOptions) -> None:
        agent = build_agent(
            settings,
            mode="local",
            resolver=fixed_resolver(local_user_identity()),
            allowed_names=LOOPBACK_NAMES,
            catalog=catalog,
            chat_options=options,
        )
        self.service = agent.service
        # The login the commands run as on the test sshd (to look for its processes).
        self.ssh_user = next(iter(settings.hosts.values())).user
        self.port = free_port()
        self.server = uvicorn.Server(
            uvicorn.Config(agent.app, host="127.0.0.1", port=self.port, log_level="warning",
                           lifespan="on")
        )
        self._thread = threading.Thread(target=self._run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _run(self) -> None:
        async def main() -> None:
            try:
                await self.server.serve()
            finally:
                await self.service.pool.close()

        asyncio.run(main())

    def start(self) -> ServedChat:
        self._thread.start()
        deadline = time.monotonic() + 60  # a bound for a loaded machine, not a wait
        while not self.server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the chat app did not start")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self._thread.join(timeout=15)


@pytest.fixture
def marker() -> Iterator[Path]:
    # Not under pytest's tmp_path: the SSH login user creates it, and cannot enter
    # root's 0700 directories.
    directory = Path(tempfile.mkdtemp(prefix="tnagent-chat-"))
    directory.chmod(0o777)
    yield directory / "marker"
    shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def catalog_file(tmp_path: Path, marker: Path) -> Path:
    path = tmp_path / "extra.yaml"
    path.write_text(EXTRA_CATALOG.replace("{marker}", str(marker)))
    return path


ChatFactory = Callable[..., ServedChat]
LOOP_FIELDS = {f.name for f in fields(LoopOptions)}


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
        catalog = load_catalog([catalog_file])
        loop = replace(LoopOptions(overloaded_backoff=0.05),
                       **{k: v for k, v in option_overrides.items() if k in LOOP_FIELDS})
        options = replace(ChatOptions(loop=loop, sdk_max_retries=1),
                          **{k: v for k, v in option_overrides.items() if k not in LOOP_FIELDS})
        served = ServedChat(settings, catalog, options).start()
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


# The sizes the page is tested at: a laptop and a phone (iPhone 12-15 class).
DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}
PageFactory = Callable[..., Any]


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
