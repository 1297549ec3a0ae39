"""Shared fixtures. Component fixtures live in tests/support/ and are registered here as
plugins (pytest_plugins), so no test module or conftest imports a fixture."""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Iterator

import pytest

from agent.logs import quiet_known_noise

# Assertions in the support modules are rewritten too (pytest's messages), whichever of them
# imports another before pytest_plugins registers it.
pytest.register_assert_rewrite("tests.support")

# The dependency noise the agent silences at start, silenced in the tests' process too,
# before the imports below bring asyncssh in.
quiet_known_noise()

from agent.web.log_limit import RepeatFilter  # noqa: E402
from tests.support import parallel  # noqa: E402
from tests.support.artifacts import clear_figures_for  # noqa: E402

# Fixtures and hooks shared by every test, registered once (never re-imported). A plugin
# comes before the plugins that import it, so pytest rewrites its asserts (rsyslog imports
# tailnet's free_port).
pytest_plugins = [
    "tests.support.markers",
    "tests.support.recording",
    "tests.support.tailnet",
    "tests.support.rsyslog",
    "tests.support.services",
    "tests.support.sshd",
]


def pytest_configure(config: pytest.Config) -> None:
    # Every agent the tests start (in process or as a subprocess) writes its audit log
    # under XDG_STATE_HOME: keep that out of the user's home.
    os.environ["XDG_STATE_HOME"] = tempfile.mkdtemp(prefix="tnagent-test-state-")


def pytest_sessionstart(session: pytest.Session) -> None:
    if not hasattr(session.config, "workerinput"):  # once a run: not again in each worker
        clear_figures_for(session.config.args, session.config.invocation_params.dir)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    parallel.longest_first(items)


@pytest.fixture(autouse=True)
def no_log_limiter_left_behind() -> Iterator[None]:
    """An agent served in process puts the log-flood limiter on the root logger's handlers,
    pytest's capture handlers included, for good (a real agent is one process); take it off
    after each test, or a later test's caplog misses records the limiter dropped."""
    yield
    for handler in logging.getLogger().handlers:
        for existing in [f for f in handler.filters if isinstance(f, RepeatFilter)]:
            handler.removeFilter(existing)
