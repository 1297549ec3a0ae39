"""The two-person rule under a flood: one caller firing hundreds of destructive calls gets a
few waiting requests and immediate refusals for the rest, every call audited, nothing run."""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path

from agent.access.identity import Identity
from agent.audit.reader import read_calls
from agent.core.approvals import MAX_PENDING_PER_CALLER
from agent.errors import LimitExceeded
from tests.support.services import ServiceFactory
from tests.support.waiting import wait_until

ALICE = Identity(login="alice@example.com", node="alice-laptop")
BOB = Identity(login="bob@example.com", node="bob-laptop")
POLICY = """
groups:
  group:ops: [bob@example.com]
rules:
  - name: alice-changes
    who: [alice@example.com]
    destructive: true
    approvers: [group:ops]
"""


async def test_a_flood_of_requests_is_bounded_and_audited(
    make_service: ServiceFactory, tmp_path: Path, marker_dir: Path
) -> None:
    service = make_service(POLICY, rate_burst=10_000, rate_per_minute=10_000)
    calls = [asyncio.create_task(service.run("make_marker", {}, host=None, identity=ALICE))
             for _ in range(300)]
    # The overflow is refused at once; a few wait, visible to Bob and not to Alice.
    await wait_until(lambda: sum(c.done() for c in calls) >= 300 - MAX_PENDING_PER_CALLER
                     and len(service.pending) == MAX_PENDING_PER_CALLER)
    refused = [c for c in calls if c.done()]
    assert len(refused) == 300 - MAX_PENDING_PER_CALLER
    assert all(isinstance(c.exception(), LimitExceeded) for c in refused)
    assert len(service.pending.visible_to(BOB)) == MAX_PENDING_PER_CALLER
    assert service.pending.visible_to(ALICE) == []
    for request in service.pending.visible_to(BOB):
        service.pending.decide(request.id, BOB, approve=False)
    outcomes = await asyncio.gather(*calls, return_exceptions=True)
    assert all(isinstance(o, Exception) for o in outcomes)
    assert len(service.pending) == 0 and not (marker_dir / "marker").exists()
    merged = [c.merged() for c in read_calls(tmp_path / "audit.jsonl")]
    assert len(merged) == 300
    assert Counter(c["outcome"] for c in merged) == {
        "limited": 300 - MAX_PENDING_PER_CALLER, "not-confirmed": MAX_PENDING_PER_CALLER}
    denied = [c for c in merged if c["outcome"] == "not-confirmed"]
    assert all(c["approved_by"]["identity"] == BOB.login for c in denied)
