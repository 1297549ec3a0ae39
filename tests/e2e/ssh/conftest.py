"""Fixtures for the agent tests: the real sshd (from tests/support), a pool on it, and
services built as `serve` builds them."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from agent.app import build_service
from agent.core.service import AgentService
from agent.hosts.inventory import HostConfig
from agent.settings import load_settings
from agent.ssh import SSHPool
from tests.support.services import ServiceFactory
from whitelist import load_catalog


@pytest.fixture
async def pool(ssh_host: HostConfig) -> AsyncIterator[SSHPool]:
    ssh_pool = SSHPool({ssh_host.name: ssh_host})
    yield ssh_pool
    await ssh_pool.close()


@pytest.fixture
async def make(ssh_host: HostConfig, tmp_path: Path,
               request: pytest.FixtureRequest) -> AsyncIterator[ServiceFactory]:
    """`make(**settings)`: a service on the sshd with the test module's CATALOG (YAML) and an
    audit log in tmp_path; closed after the test."""
    path = tmp_path / "catalog.yaml"
    path.write_text(request.module.CATALOG)
    catalog = load_catalog([path])
    made: list[AgentService] = []

    def maker(**values: Any) -> AgentService:
        settings = dataclasses.replace(
            load_settings({}, env_file=None), hosts={ssh_host.name: ssh_host},
            default_host=ssh_host.name, audit_log=tmp_path / "audit.jsonl", **values)
        service = build_service(settings, mode="tailnet", catalog=catalog)
        made.append(service)
        return service

    yield maker
    for service in made:
        service.outputs.close()
        await service.close()
