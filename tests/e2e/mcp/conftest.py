"""An agent served over real HTTP on loopback, backed by the real test sshd."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from agent.hosts.inventory import HostConfig
from tests.support.agents import RunningAgent, running_agent, settings_for


@pytest.fixture(scope="session")
async def agent(ssh_host: HostConfig) -> AsyncIterator[RunningAgent]:
    async with running_agent(settings_for(ssh_host)) as running:
        yield running
