"""A test tailnet whose headscale runs with a policy file (grants), for app capabilities.

The shared fixture starts headscale without a policy (allow all). Here the same
`Headscale` is configured with `policy.path`, so a grant with `app:` reaches the
destination node's packet filter and its WhoIs answers carry the capability.
"""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from tests.support.tailnet import Headscale, TailnetBinaries, TestTailnet


class PolicyHeadscale(Headscale):
    """Headscale reading its policy from `policy` (a HuJSON/JSON document)."""

    def __init__(self, binary: Path, workdir: Path, policy: Mapping[str, Any]) -> None:
        super().__init__(binary, workdir)
        self.policy_path = workdir / "policy.json"
        self.policy_path.write_text(json.dumps(policy, indent=2))
        config = json.loads(self.config_path.read_text())
        config["policy"] = {"mode": "file", "path": str(self.policy_path)}
        self.config_path.write_text(json.dumps(config, indent=2))


def allow_all_with_grants(*grants: Mapping[str, Any]) -> dict[str, Any]:
    """Every node may reach every other (as without a policy), plus the given grants."""
    return {"grants": [{"src": ["*"], "dst": ["*"], "ip": ["*"]}, *grants]}


async def start_policy_tailnet(
    binaries: TailnetBinaries, workdir: Path, policy: Mapping[str, Any]
) -> TestTailnet:
    os.chmod(workdir, 0o700)
    headscale = PolicyHeadscale(binaries.headscale, workdir, policy)
    headscale.start()
    return TestTailnet(binaries, headscale, workdir)


def policy_tailnet_fixture(policy: Mapping[str, Any]) -> Any:
    """A module-scoped fixture: a tailnet of its own whose headscale enforces `policy`."""

    @pytest_asyncio.fixture(scope="module", loop_scope="session")
    async def fixture(
        tailnet_binaries: TailnetBinaries, tmp_path_factory: pytest.TempPathFactory
    ) -> AsyncIterator[TestTailnet]:
        net = await start_policy_tailnet(tailnet_binaries, tmp_path_factory.mktemp("ptailnet"),
                                         policy)
        try:
            yield net
        finally:
            await net.aclose()
            net.headscale.stop()

    return fixture
