"""Fixtures for the agent tests: the real sshd (from tests/support) and a pool on it."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from agent.inventory import HostConfig
from agent.ssh import SSHPool
from tests.support.sshd import ssh_host, sshd, sshd_factory  # noqa: F401


@pytest.fixture
async def pool(ssh_host: HostConfig) -> AsyncIterator[SSHPool]:  # noqa: F811
    ssh_pool = SSHPool({ssh_host.name: ssh_host})
    yield ssh_pool
    await ssh_pool.close()
