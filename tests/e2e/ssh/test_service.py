"""Policy, limits and the audit log on the one path every tool call takes (real sshd)."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections import Counter
from pathlib import Path

import pytest

from agent.access.identity import Identity
from agent.access.policy import DENY_RULE, TAGGED_RULE, PolicyDenied
from agent.audit.reader import read_calls, read_records
from agent.errors import AuditUnavailable, LimitExceeded
from tests.support.services import ServiceFactory
from whitelist import ParameterError, UnknownCommandError

ALICE = Identity(login="alice@example.com", node="laptop.tailnet.test")
BOB = Identity(login="bob@example.com", node="phone.tailnet.test")
CI = Identity(login=None, node="ci.tailnet.test", tags=("tag:ci",))
LOCAL = Identity(login="me", node="here", source="local")
ALICE_ADMIN = """
rules:
  - name: alice-admin
    who: [alice@example.com]
    destructive: true
"""


def audit_calls(path: Path) -> dict[str, dict[str, object]]:
    return {c.call: c.merged() for c in read_calls(path)}


async def test_an_identity_without_a_grant_is_refused_and_the_refusal_is_recorded(
    make_service: ServiceFactory, tmp_path: Path
) -> None:
    service = make_service(ALICE_ADMIN + "default: none\n")
    with pytest.raises(PolicyDenied, match=r"\[rule: default deny\]"):
        await service.run("disk_usage", {}, host=None, identity=BOB)
    ok = await service.run("disk_usage", {}, host=None, identity=ALICE)
    assert ok.exit_status == 0
    (refused,) = [c for c in audit_calls(tmp_path / "audit.jsonl").values()
                  if c["identity"] == BOB.login]
    assert refused["outcome"] == "refused"
    assert refused["decision"] == {"allowed": False, "rule": DENY_RULE,
                                   "reason": refused["decision"]["reason"]}  # type: ignore[index]
    assert "rendered" not in refused  # refused before anything was rendered or run


async def test_a_tagged_node_gets_nothing_under_the_shipped_default(
    make_service: ServiceFactory,
) -> None:
    service = make_service()
    with pytest.raises(PolicyDenied) as refused:
        await service.run("hostname", {}, host=None, identity=CI)
    assert refused.value.decision.rule == TAGGED_RULE
    assert service.visible_commands(CI) == []
    # ... while a tailnet user gets the read-only commands, and no destructive one.
    names = {c.name for c in service.visible_commands(BOB)}
    assert "disk_usage" in names and "make_marker" not in names
    assert (await service.run("hostname", {}, host=None, identity=BOB)).exit_status == 0


async def test_a_destructive_command_needs_the_grant_and_a_confirmation(
    make_service: ServiceFactory, marker_dir: Path, tmp_path: Path
) -> None:
    service = make_service(ALICE_ADMIN)
    marker = marker_dir / "marker"
    asked: list[str] = []

    async def yes() -> None:
        asked.append("asked")

    async def no() -> None:
        asked.append("declined")
        raise RuntimeError("the person said no")

    # Without the grant: refused before anyone is asked to confirm.
    with pytest.raises(PolicyDenied, match="destructive"):
        await service.run("make_marker", {}, host=None, identity=BOB, confirm=yes)
    assert asked == [] and not marker.exists()
    # With the grant but no way to confirm: refused.
    with pytest.raises(PolicyDenied, match="confirmation"):
        await service.run("make_marker", {}, host=None, identity=ALICE)
    assert not marker.exists()
    # Declined: nothing ran.
    with pytest.raises(RuntimeError):
        await service.run("make_marker", {}, host=None, identity=ALICE, confirm=no)
    assert not marker.exists()
    # Granted and confirmed: it runs.
    result = await service.run("make_marker", {}, host=None, identity=ALICE, confirm=yes)
    assert result.exit_status == 0 and marker.exists()
    outcomes = [c["outcome"] for c in audit_calls(tmp_path / "audit.jsonl").values()]
    assert outcomes == ["refused", "refused", "not-confirmed", "ran"]


async def test_with_the_audit_log_unwritable_nothing_runs(
    make_service: ServiceFactory, marker_dir: Path, tmp_path: Path
) -> None:
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    # Root ignores file modes, so make the path impossible instead of unwritable.
    service = make_service(ALICE_ADMIN, audit_log=blocker / "audit.jsonl")
    confirmed: list[bool] = []

    async def yes() -> None:
        confirmed.append(True)

    with pytest.raises(AuditUnavailable, match="Nothing was run") as failed:
        await service.run("make_marker", {}, host=None, identity=ALICE, confirm=yes)
    assert str(blocker / "audit.jsonl") in str(failed.value)
    assert not (marker_dir / "marker").exists()
    for identity in (ALICE, LOCAL):
        with pytest.raises(AuditUnavailable):
            await service.run("hostname", {}, host=None, identity=identity)
    # Nothing reached the host: the SSH pool never opened a connection.
    status = await service.pool.connection_status()
    assert status and not any(s["connected"] for s in status.values()), status


async def test_every_call_appears_in_the_log_exactly_once(
    make_service: ServiceFactory, tmp_path: Path
) -> None:
    # Alice has 9 calls in flight at once here; her fair share is not what this is about.
    service = make_service(ALICE_ADMIN + "default: none\n", identity_concurrency=16)

    async def attempt(name: str, args: dict[str, object], identity: Identity) -> str:
        try:
            await service.run(name, args, host=None, identity=identity)
            return "ran"
        except PolicyDenied:
            return "refused"
        except (ParameterError, UnknownCommandError):
            return "invalid"

    attempts: list[tuple[str, dict[str, object], Identity]] = [
        ("disk_usage", {}, ALICE),
        ("disk_usage_path", {"path": "/etc"}, ALICE),
        ("disk_usage_path", {"path": "/etc; touch /tmp/x"}, ALICE),
        ("no_such_command", {}, ALICE),
        ("disk_usage", {}, BOB),
        ("make_marker", {}, BOB),
        ("uptime", {}, LOCAL),
    ] * 3
    outcomes = await asyncio.gather(*(attempt(*a) for a in attempts))
    overview = await service.run_many(["hostname", "uptime", "uname"], host=None,
                                      identity=ALICE)
    records = list(read_records(tmp_path / "audit.jsonl"))
    events = Counter((r["call"], r["event"]) for r in records)
    calls = {call for call, _ in events}
    assert len(calls) == len(attempts) + len(overview)
    assert all(events[(call, "start")] == 1 and events[(call, "end")] == 1 for call in calls)
    by_outcome = Counter(c["outcome"] for c in audit_calls(tmp_path / "audit.jsonl").values())
    assert by_outcome == {"ran": outcomes.count("ran") + 3,
                          "refused": outcomes.count("refused"),
                          "invalid": outcomes.count("invalid")}
    ran = next(c for c in audit_calls(tmp_path / "audit.jsonl").values()
               if c["command"] == "disk_usage_path" and c["outcome"] == "ran")
    for key in ("time", "identity", "node", "host", "command", "parameters", "rendered",
                "exit_status", "duration_ms", "bytes_out", "truncated", "decision"):
        assert key in ran, key
    assert ran["parameters"] == {"path": "/etc"} and str(ran["rendered"]).endswith(" -- /etc")
    assert ran["node"] == ALICE.node and ran["bytes_out"] > 0  # type: ignore[operator]


async def test_secrets_never_reach_the_audit_log(
    make_service: ServiceFactory, tmp_path: Path
) -> None:
    secret = "sk-ant-api03-fake-secret-for-tests"
    service = make_service(anthropic_api_key=secret)
    for name, args in (("no_" + secret, {}), ("disk_usage_path", {"path": f"/tmp/{secret}"}),
                       ("service_status", {"unit": secret})):
        with contextlib.suppress(Exception):  # what matters is what was written
            await service.run(name, args, host=None, identity=BOB)
    text = (tmp_path / "audit.jsonl").read_text()
    assert secret not in text and "[REDACTED]" in text


async def test_the_rate_limit_is_per_identity_and_spares_the_local_operator(
    make_service: ServiceFactory,
) -> None:
    service = make_service(rate_burst=3, rate_per_minute=0)
    for _ in range(3):
        await service.run("hostname", {}, host=None, identity=BOB)
    with pytest.raises(LimitExceeded, match=r"rate limit: bob@example\.com"):
        await service.run("hostname", {}, host=None, identity=BOB)
    await service.run("hostname", {}, host=None, identity=ALICE)  # her own budget
    for _ in range(5):
        await service.run("hostname", {}, host=None, identity=LOCAL)


async def test_calls_in_flight_per_host_are_bounded(
    make_service: ServiceFactory, tmp_path: Path
) -> None:
    service = make_service(host_concurrency=2)
    results = await asyncio.gather(
        *(service.run("slow", {}, host=None, identity=ALICE) for _ in range(3)),
        return_exceptions=True,
    )
    refused = [r for r in results if isinstance(r, LimitExceeded)]
    assert len(refused) == 1 and "calls in flight" in str(refused[0])
    assert sum(1 for r in results if not isinstance(r, BaseException)) == 2
    outcomes = Counter(c["outcome"] for c in audit_calls(tmp_path / "audit.jsonl").values())
    assert outcomes == {"ran": 2, "limited": 1}


async def test_the_log_rotates_by_size_and_is_read_across_files(
    make_service: ServiceFactory, tmp_path: Path
) -> None:
    service = make_service(audit_max_bytes=10_000, audit_budget=10_000_000)
    for _ in range(30):
        await service.run("hostname", {}, host=None, identity=BOB)
    files = await asyncio.to_thread(lambda: sorted(tmp_path.glob("audit.jsonl*")))
    assert len(files) > 2, files
    assert all(f.stat().st_size <= 10_000 for f in files)
    calls = read_calls(tmp_path / "audit.jsonl")
    assert len(calls) == 30 and all(c.end is not None for c in calls)
    for line in (tmp_path / "audit.jsonl").read_text().splitlines():
        json.loads(line)
