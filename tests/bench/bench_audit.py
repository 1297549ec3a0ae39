"""The audit log's chain and its shipping: what they cost a call, and how long `verify` takes.

- A record written (AuditLog.write: shaped, chained, appended under the log's lock), next to
  its floor: the same line appended with one write(2) on an O_APPEND descriptor.
- `tailnet-agent audit verify` on 10,000 records in rotated files.
- A record written while the syslog shipper runs, with the receiver (a real rsyslogd on
  loopback) up and stopped: the shipper must never make a write wait.
- Catching up: records written while the receiver was stopped, delivered when it is back.

    python -m tests.bench.bench_audit
"""

from __future__ import annotations

import logging
import os
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from agent.access.identity import Identity
from agent.audit.ship import Shipper
from agent.audit.syslog import Sink
from agent.audit.verify import verify
from agent.audit.writer import AuditLog
from tests.bench.bench_stats import Row
from tests.support.rsyslog import Rsyslog

GROUP = "audit log: chain, verify, shipping"
ALICE = Identity(login="alice@example.com", node="laptop.tailnet.test")
WRITES = 5000
VERIFY_CALLS = 5000  # two records each
CATCH_UP = 20_000


def _write(log: AuditLog, n: int) -> None:
    call = f"{n:016x}"
    log.start(call, ALICE, tool="run_command", command="uptime", host="web-1",
              parameters={"n": n})


def write_latencies(log: AuditLog, n: int = WRITES) -> list[float]:
    taken = []
    for i in range(n):
        started = time.perf_counter()
        _write(log, i)
        taken.append(time.perf_counter() - started)
    return taken


def floor_latencies(path: Path, line: bytes, n: int = WRITES) -> list[float]:
    taken = []
    for _ in range(n):
        started = time.perf_counter()
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        os.write(fd, line)
        os.close(fd)
        taken.append(time.perf_counter() - started)
    return taken


def chain_rows(directory: Path) -> list[Row]:
    log = AuditLog(directory / "write" / "audit.jsonl")
    write_latencies(log, 500)  # warm up
    ours = write_latencies(log)
    line = (directory / "write" / "audit.jsonl").read_bytes().splitlines(keepends=True)[-1]
    floor = floor_latencies(directory / "floor.jsonl", line)
    return [
        Row.latency("audit_write", "ours: a record written (shaped, chained, appended)", GROUP,
                    ours, note=f"{len(line)} bytes a line"),
        Row.latency("audit_write_floor", "floor: the same line appended with one write(2)",
                    GROUP, floor),
    ]


def verify_rows(directory: Path, rounds: int = 3) -> list[Row]:
    path = directory / "verify" / "audit.jsonl"
    log = AuditLog(path, max_bytes=500_000)
    for n in range(VERIFY_CALLS):
        call = f"{n:016x}"
        log.start(call, ALICE, tool="run_command", command="uptime", host="web-1",
                  parameters={"n": n})
        log.end(call, ALICE, outcome="ran", exit_status=0, duration_ms=4.2)
    seconds = []
    for _ in range(rounds):
        started = time.perf_counter()
        result = verify(path)
        seconds.append(time.perf_counter() - started)
        assert result.ok and result.records == 2 * VERIFY_CALLS, result.summary()
    took = statistics.median(seconds)
    return [Row("audit_verify", f"verify: {2 * VERIFY_CALLS:,} records in "
                f"{len(result.files)} files", GROUP, value=round(took, 3), unit="s", n=rounds,
                note=f"{took / (2 * VERIFY_CALLS) * 1e6:.1f} us a record; "
                f"{sum(f.stat().st_size for f in result.files) / 1e6:.1f} MB")]


def _until(done: Callable[[], bool], timeout: float = 120.0) -> float:
    started = time.monotonic()
    while not done():
        if time.monotonic() - started > timeout:
            raise TimeoutError("the receiver did not get every record")
        time.sleep(0.02)
    return time.monotonic() - started


def shipping_rows(directory: Path) -> list[Row]:
    receiver = Rsyslog(directory / "rsyslog")
    receiver.start()
    log = AuditLog(directory / "ship" / "audit.jsonl", max_bytes=10_000_000)
    shipper = Shipper(log, Sink(receiver.url), backlog=1_000_000)
    shipper.start()
    try:
        write_latencies(log, 500)
        up = write_latencies(log)
        _until(lambda: shipper.status().delivered >= log.last_link().seq)
        receiver.stop()
        _until(lambda: not shipper.status().connected, 30)
        down = write_latencies(log)
        for n in range(CATCH_UP - WRITES):
            _write(log, n)
        waiting = log.last_link().seq - shipper.status().delivered
        received_before = len(receiver.received())
        started = time.monotonic()
        receiver.start()
        _until(lambda: len(receiver.received()) - received_before >= waiting)
        catch_up = time.monotonic() - started
    finally:
        shipper.stop()
        receiver.stop()
    return [
        Row.latency("audit_write_shipped", "ours: a record written, receiver up", GROUP, up),
        Row.latency("audit_write_receiver_down", "ours: a record written, receiver stopped",
                    GROUP, down),
        Row("audit_catch_up", f"catch-up: {waiting:,} waiting records delivered", GROUP,
            value=round(waiting / catch_up), unit="records/s", n=1,
            note=f"{catch_up:.2f} s from the receiver's start (retry interval included)"),
    ]


def audit_rows() -> list[Row]:
    logging.getLogger("agent.core").setLevel(logging.ERROR)
    with tempfile.TemporaryDirectory(prefix="tnagent-bench-audit-") as tmp:
        directory = Path(tmp)
        rows = chain_rows(directory) + verify_rows(directory)
        if shutil.which("rsyslogd") or os.access("/usr/sbin/rsyslogd", os.X_OK):
            rows += shipping_rows(directory)
        else:
            rows.append(Row.missing("audit_shipping", "shipping to rsyslog", GROUP,
                                    "no rsyslogd (apt-get install rsyslog)"))
        return rows


if __name__ == "__main__":
    for r in audit_rows():
        figure = (f"p50 {r.p50_ms * 1000:.1f} us, p99 {r.p99_ms * 1000:.1f} us"
                  if r.p50_ms is not None and r.p99_ms is not None
                  else f"{r.value} {r.unit}")
        print(f"{r.label}: {figure} (n={r.n}) {r.note}")
