"""Shared fixtures. Component fixtures live in tests/support/ and are imported here."""

from __future__ import annotations

import os
import tempfile

import pytest

from tests.support.sshd import ssh_host, sshd, sshd_factory  # noqa: F401


def pytest_configure(config: pytest.Config) -> None:
    # Every agent the tests start (in process or as a subprocess) writes its audit log
    # under XDG_STATE_HOME: keep that out of the user's home.
    os.environ["XDG_STATE_HOME"] = tempfile.mkdtemp(prefix="tnagent-test-state-")
