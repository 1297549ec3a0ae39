"""Services with a policy, an audit log of their own and a catalog with destructive commands."""

from __future__ import annotations

import dataclasses
import tempfile
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from agent.app import build_service
from agent.core.service import AgentService
from agent.hosts.inventory import HostConfig
from agent.settings import Settings, load_settings
from whitelist import load_catalog


@pytest.fixture
def marker_dir() -> Iterator[Path]:
    # Writable by the sshd test user, so a destructive command that ran leaves a trace.
    directory = Path(tempfile.mkdtemp(prefix="tnagent-policy-"))
    directory.chmod(0o777)
    yield directory
    for leftover in directory.iterdir():
        leftover.unlink()
    directory.rmdir()


def write_test_catalog(tmp_path: Path, marker_dir: Path) -> Path:
    path = tmp_path / "extra.yaml"
    path.write_text(f"""
commands:
  make_marker:
    description: Create the marker file (a stand-in for a command that changes the host).
    category: Changes
    template: "touch -- {marker_dir / 'marker'}"
    destructive: true
  slow:
    description: Sleep for a second.
    category: System
    template: "sleep 1"
""")
    return path


# `make_service(policy, **settings)` here, `make(**settings)` in tests/e2e/ssh/conftest.py.
ServiceFactory = Callable[..., AgentService]


@pytest.fixture
async def make_service(
    ssh_host: HostConfig, tmp_path: Path, marker_dir: Path
) -> AsyncIterator[ServiceFactory]:
    made: list[AgentService] = []
    catalog = load_catalog([write_test_catalog(tmp_path, marker_dir)])

    def make(policy: str | None = None, **settings: Any) -> AgentService:
        base: Settings = load_settings({}, env_file=None)
        policy_file = None
        if policy is not None:
            policy_file = tmp_path / f"policy-{len(made)}.yaml"
            policy_file.write_text(policy)
        values: dict[str, Any] = {"audit_log": tmp_path / "audit.jsonl", **settings}
        configured = dataclasses.replace(
            base, hosts={ssh_host.name: ssh_host}, default_host=ssh_host.name,
            policy_file=policy_file, **values,
        )
        service = build_service(configured, mode="tailnet", catalog=catalog)
        made.append(service)
        return service

    yield make
    for service in made:
        await service.close()
