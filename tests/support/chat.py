"""The chat page served for real: the agent's app (build_agent, as `serve --local` builds
it) behind the product's HTTP server (agent.web.server.HTTPServer: its connection guard, its
loopback socket, its limits from the settings), with a real sshd behind it and a scripted
Anthropic API (tests/support/fake_anthropic.py).

The server runs in its own thread and event loop, so tests drive Chromium with
Playwright's sync API from the test thread.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from dataclasses import fields, replace
from typing import Any

from agent.access.identity import local_user_identity
from agent.app import build_agent
from agent.chat import ChatOptions
from agent.chat.agent_loop import LoopOptions
from agent.settings import Settings
from agent.web.middleware.host_origin import LOOPBACK_NAMES
from agent.web.middleware.identity import fixed_resolver
from agent.web.server import HTTPServer, connection_limits
from whitelist import Catalog

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



START_BOUND = 60.0  # s: a bound for a loaded machine, not a wait


class ServedChat:
    """The agent's app under the product's HTTPServer, in a background thread."""

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
        self.port = 0
        self._http = HTTPServer(agent.app, port=0, limits=connection_limits(settings))
        self._loop: asyncio.AbstractEventLoop | None = None
        self._started = threading.Event()
        self._thread = threading.Thread(target=asyncio.run, args=(self._serve(),), daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def _serve(self) -> None:
        try:
            self.port = await self._http.start()
            self._loop = asyncio.get_running_loop()
        finally:
            self._started.set()  # started or failed: start() tells which
        try:
            await self._http.wait()
        finally:
            await self.service.close()  # as serve_app does after the HTTP server stopped

    def start(self) -> ServedChat:
        self._thread.start()
        if not self._started.wait(START_BOUND) or self._loop is None:
            raise RuntimeError("the chat app did not start (its error is in the log above)")
        return self

    def stop(self) -> None:
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._http.request_exit)
        self._thread.join(timeout=15)


# `chat_app(fake, **options)` (the fixture in tests/e2e/chat/conftest.py).
ChatFactory = Callable[..., ServedChat]
LOOP_FIELDS = {f.name for f in fields(LoopOptions)}


def chat_options(**overrides: Any) -> ChatOptions:
    """The chat's options for a test: quick retries, and `overrides` of LoopOptions or
    ChatOptions fields by name."""
    loop = replace(LoopOptions(overloaded_backoff=0.05),
                   **{k: v for k, v in overrides.items() if k in LOOP_FIELDS})
    return replace(ChatOptions(loop=loop, sdk_max_retries=1),
                   **{k: v for k, v in overrides.items() if k not in LOOP_FIELDS})
