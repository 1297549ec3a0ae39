"""Audit records shipped to a real rsyslog as calls run on a real sshd (agent/audit/ship.py).

A receiver that is down never slows a call or loses a record: the local file is written
first, the sender catches up from it when the receiver is back, and what the backlog bound
leaves out is said in a `not-shipped` record, the agent's log, /metrics and `doctor`.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from agent.access.identity import Identity
from agent.audit.chain import line_hash, record_line
from agent.audit.reader import AuditFilter, log_files, show
from agent.audit.ship import ShipStatus
from agent.audit.verify import verify
from agent.audit.writer import NOT_SHIPPED_EVENT
from agent.commands.audit import run_verify
from agent.commands.doctor import run_doctor
from agent.core.service import AgentService
from agent.web.prometheus import AgentMetrics
from tests.support.rsyslog import Received, Rsyslog, make_certificates
from tests.support.services import ServiceFactory
from tests.support.waiting import wait_until

# The person at the machine: no rate limit, so a thousand calls are a thousand records.
LOCAL = Identity(login="me", node="here", source="local")


def local_lines(audit: Path) -> dict[int, bytes]:
    """Every record of the local log by seq, as its line."""
    found: dict[int, bytes] = {}
    for file in log_files(audit):
        for line in file.read_bytes().splitlines():
            found[json.loads(line)["seq"]] = line
    return found


def first_seen(received: list[Received]) -> list[int]:
    """The seqs in the order they first arrived (a record sent again arrives twice)."""
    seen: set[int] = set()
    order = []
    for message in received:
        seq = message.record["seq"]
        if seq not in seen:
            seen.add(seq)
            order.append(seq)
    return order


def has_all(count: Callable[[], int]) -> Callable[[list[Received]], bool]:
    return lambda got: len({m.record["seq"] for m in got}) >= count()


async def calls(service: AgentService, n: int, *, pace: float = 0.0,
                concurrency: int = 1) -> list[tuple[float, float]]:
    """`n` real calls (hostname on the sshd); (start, seconds) of each."""
    timings: list[tuple[float, float]] = []
    gate = asyncio.Semaphore(concurrency)

    async def one() -> None:
        async with gate:
            started = time.monotonic()
            result = await service.run("hostname", {}, host=None, identity=LOCAL)
            timings.append((started, time.monotonic() - started))
            assert result.exit_status == 0
            if pace:
                await asyncio.sleep(pace)

    await asyncio.gather(*(one() for _ in range(n)))
    return timings


async def shipper_shows(service: AgentService, done: Callable[[ShipStatus], bool]) -> ShipStatus:
    """The shipper's status once `done` holds for it (it changes in the sender's thread)."""
    assert service.shipper is not None
    shipper = service.shipper
    # A tuple, true whatever the status: it changes in the sender's thread.
    (status,) = await wait_until(lambda: (s,) if done(s := shipper.status()) else None, 30,
                                 "the audit shipper's status", every=0.1)
    return status


def same_records(received: list[Received], audit: Path) -> None:
    """What rsyslog wrote is the local line, byte for byte, with the header it belongs to."""
    local = local_lines(audit)
    for message in received:
        record = message.record
        assert line_hash(message.line.encode()) == line_hash(local[record["seq"]])
        assert message.app == "tailnet-agent" and message.msgid == record["event"]
        assert message.timestamp == record["time"]


async def test_rsyslog_receives_every_record_of_a_thousand_calls_in_order(
        make_service: ServiceFactory, rsyslog: Callable[..., Rsyslog],
        tmp_path: Path) -> None:
    receiver = rsyslog()
    # 50 KB files: the sender follows the log across some twenty rotations.
    service = make_service(audit_syslog=receiver.url, audit_max_bytes=50_000)
    await calls(service, 1000, concurrency=8)
    audit = tmp_path / "audit.jsonl"
    written = len(local_lines(audit))
    assert written == 2000
    got = receiver.wait_for(has_all(lambda: written))
    assert [m.record["seq"] for m in got] == list(range(1, 2001))  # in order, none twice
    same_records(got, audit)
    assert len(log_files(audit)) > 10
    await service.close()
    assert verify(audit).ok


async def test_a_receiver_down_for_30_s_blocks_no_call_and_loses_no_record(
        make_service: ServiceFactory, rsyslog: Callable[..., Rsyslog],
        tmp_path: Path) -> None:
    receiver = rsyslog()
    service = make_service(audit_syslog=receiver.url, audit_max_bytes=50_000)
    audit = tmp_path / "audit.jsonl"
    outage: list[float] = []

    async def stop_then_start() -> None:
        await wait_until(lambda: len(local_lines(audit)) >= 400, 60, "200 calls in the log",
                         every=0.1)
        outage.append(time.monotonic())
        await asyncio.to_thread(receiver.stop)
        await asyncio.sleep(30)
        await asyncio.to_thread(receiver.start)
        outage.append(time.monotonic())

    timings, _ = await asyncio.gather(calls(service, 1000, pace=0.04), stop_then_start())
    down, up = outage
    during = [took for started, took in timings if down <= started <= up]
    before = [took for started, took in timings if started < down]
    after = [took for started, took in timings if started > up]
    assert len(during) > 300 and before and after
    for phase, taken in (("before", before), ("during", during), ("after", after)):
        print(f"{phase} the outage: {len(taken)} calls, median "
              f"{statistics.median(taken) * 1000:.1f} ms, max {max(taken) * 1000:.1f} ms")
    # Nothing a call does waits for the receiver (a connection attempt alone takes up to 5 s).
    assert max(during) < 2.0

    written = len(local_lines(audit))
    assert written == 2000
    got = receiver.wait_for(has_all(lambda: written))
    order = first_seen(got)
    assert order == list(range(1, 2001)), "every record arrived, first time in order"
    same_records(got, audit)
    status = service.shipper.status() if service.shipper else None
    assert status is not None and status.not_shipped == 0
    print(f"received {len(got)} messages for {written} records "
          f"({len(got) - written} sent again after the break)")
    await service.close()


async def test_the_backlog_bound_holds_and_what_was_not_sent_is_said(
        make_service: ServiceFactory, rsyslog: Callable[..., Rsyslog],
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    receiver = rsyslog()
    service = make_service(audit_syslog=receiver.url, audit_ship_backlog=40)
    audit = tmp_path / "audit.jsonl"
    await calls(service, 10)
    await shipper_shows(service, lambda status: status.delivered >= 20)  # SETTLE after sent
    receiver.stop()
    await calls(service, 60)  # 120 records while it is down: 80 more than the bound
    before_restart = len(local_lines(audit))
    receiver.start()
    got = receiver.wait_for(lambda g: any(m.msgid == NOT_SHIPPED_EVENT for m in g)
                            and has_all(lambda: before_restart - 80 + 1)(g))
    (note,) = [m.record for m in got if m.msgid == NOT_SHIPPED_EVENT]
    assert note["records"] == 80 and note["last_seq"] == before_restart - 40
    assert "TAILNET_AGENT_AUDIT_SHIP_BACKLOG" in note["reason"]
    # After the receiver came back: the last 40 records and the note, nothing in the gap.
    arrived = set(first_seen(got))
    assert set(range(note["last_seq"] + 1, before_restart + 1)) <= arrived
    assert not arrived & set(range(21, note["last_seq"] + 1)), "the bound held"
    assert note["first_seq"] == 21

    metrics = AgentMetrics()
    text = (await metrics.exposition(service, None)).body.decode()
    assert "tailnet_agent_audit_not_shipped_total 80.0" in text
    assert "tailnet_agent_audit_receiver_up 1.0" in text
    await service.close()
    capsys.readouterr()
    await run_doctor(service.settings)
    out = capsys.readouterr().out
    assert f"audit receiver {receiver.url}: reachable" in out
    assert (f"80 record(s) were never sent to {receiver.url} (the last: seq 21 to "
            f"{note['last_seq']}") in out
    assert verify(audit).ok  # the note is part of the chain like any record
    shown = show(audit, AuditFilter(), as_json=False)
    assert any(f"80 record(s), seq 21 to {note['last_seq']}, were not sent to {receiver.url}"
               in line for line in shown)


async def test_records_written_while_the_receiver_was_down_are_sent_after_a_restart(
        make_service: ServiceFactory, rsyslog: Callable[..., Rsyslog],
        tmp_path: Path) -> None:
    receiver = rsyslog()
    receiver.stop()
    settings = {"audit_syslog": receiver.url}
    first = make_service(**settings)
    await calls(first, 5)
    await first.close()  # the agent stops while the receiver is down
    receiver.start()
    second = make_service(**settings)  # the cursor says where the first one stopped
    await calls(second, 5)
    got = receiver.wait_for(has_all(lambda: 20))
    assert first_seen(got) == list(range(1, 21))
    await second.close()


async def test_tls_with_the_receivers_ca_and_not_without(
        make_service: ServiceFactory, rsyslog: Callable[..., Rsyslog],
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    receiver = rsyslog(tls=True)
    assert receiver.tls is not None and receiver.url.startswith("tls://")
    service = make_service(audit_syslog=receiver.url, audit_syslog_ca=receiver.tls.ca)
    await calls(service, 10)
    got = receiver.wait_for(has_all(lambda: 20))
    assert first_seen(got) == list(range(1, 21))
    same_records(got, tmp_path / "audit.jsonl")
    await service.close()

    other = make_certificates(tmp_path / "other", name="another CA")
    service = make_service(audit_syslog=receiver.url, audit_syslog_ca=other.ca,
                           audit_log=tmp_path / "second" / "audit.jsonl")
    await calls(service, 2)
    status = await shipper_shows(service, lambda status: status.error is not None)
    assert "certificate verify failed" in str(status.error)
    assert len(receiver.received()) == 20  # nothing reached a receiver it could not trust
    capsys.readouterr()
    await run_doctor(service.settings)
    out = capsys.readouterr().out
    assert f"audit receiver {receiver.url}: cannot be reached" in out
    assert "certificate verify failed" in out
    await service.close()


async def test_the_shipped_copy_shows_an_end_cut_off_and_a_chain_written_again(
        make_service: ServiceFactory, rsyslog: Callable[..., Rsyslog],
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    receiver = rsyslog()
    service = make_service(audit_syslog=receiver.url)
    await calls(service, 20)
    receiver.wait_for(has_all(lambda: 40))
    await service.close()
    audit = tmp_path / "audit.jsonl"

    def verify_cli(*args: str) -> tuple[int, list[str]]:
        """`tailnet-agent audit verify [--shipped FILE]` (the command, without main()'s
        logging set-up, which would outlive this test's captured output)."""
        shipped = Path(args[1]) if args else None
        status = run_verify(service.settings, public_key=None, shipped=shipped)
        return status, capsys.readouterr().out.splitlines()

    lines = audit.read_bytes().splitlines(keepends=True)
    audit.write_bytes(b"".join(lines[:-6]))  # the last three calls cut off, whole lines
    assert verify_cli()[0] == 0  # nothing in the log itself shows it
    status, out = verify_cli("--shipped", str(receiver.output))
    assert status == 1
    assert out[0] == ("audit.jsonl:34: truncated: the log ends at seq 34, the shipped copy "
                      "goes on to seq 40 (6 record(s) more): the end was cut")

    # Written again from record 10 on, every hash after it computed anew: only the copy
    # that left the machine tells.
    record = json.loads(lines[9])
    record["exit_status"] = 1
    rewritten = [*lines[:9], record_line(record)]
    for line in lines[10:]:
        record = json.loads(line)
        record["prev"] = line_hash(rewritten[-1])
        rewritten.append(record_line(record))
    audit.write_bytes(b"".join(rewritten))
    assert verify_cli()[0] == 0
    status, out = verify_cli("--shipped", str(receiver.output))
    assert status == 1
    assert out[0] == "audit.jsonl:10: edited: it is not the record seq 10 that was shipped"


async def test_one_agent_ships_a_log_and_another_takes_over_when_it_stops(
        make_service: ServiceFactory, rsyslog: Callable[..., Rsyslog],
        tmp_path: Path) -> None:
    receiver = rsyslog()
    first = make_service(audit_syslog=receiver.url)
    second = make_service(audit_syslog=receiver.url)  # another agent, the same log
    await calls(first, 5)
    await calls(second, 5)
    got = receiver.wait_for(has_all(lambda: 20))
    assert first_seen(got) == list(range(1, 21)) and len(got) == 20  # once each
    await first.close()
    await calls(second, 5)  # the second ships once it holds the cursor (within 10 s)
    got = receiver.wait_for(has_all(lambda: 30))
    assert first_seen(got) == list(range(1, 31))
    await second.close()
    assert verify(tmp_path / "audit.jsonl").ok  # two writers, one chain
