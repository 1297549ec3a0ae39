"""Audit records shipped off the machine as they are written: syslog over TCP or TLS.

Each record goes to the operator's syslog receiver as one RFC 5424 message over TCP or
TLS (agent.audit.syslog). Every syslog server speaks this (rsyslog's imtcp,
syslog-ng, and the log systems that accept syslog), and the tests run it against a real
rsyslog; OTLP would need an OpenTelemetry collector, which these machines do not have to
test against.

The local log is the queue. A call's record is written to the local file first, as
before, and nothing here ever makes a write wait: the sender is a thread that reads the
files from its cursor (the `seq` and hash of the last record delivered, kept in
`<log>.shipped`) and follows them across rotations. Syslog over TCP has no acknowledgement
of its own, so a record counts as delivered when the receiver's TCP has acknowledged its
bytes and the connection stayed up for SETTLE seconds after it was sent; when a connection
breaks, every record not yet delivered is sent again (the receiver may get some twice:
their `seq` tells them apart). A receiver that is down is retried every few seconds. The
backlog is bounded: when more than `backlog` records wait, the oldest are not sent, an
audit record (`not-shipped`, with their range) says so and is shipped in their place, a
warning goes to the log, and the count shows in /metrics and `doctor`.

One process ships a log: the cursor file is locked while a sender runs (a second agent
writing the same log leaves the shipping to the first).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import select
import socket
import ssl
import threading
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from agent.errors import AuditUnavailable

from .chain import START, Link
from .follow import LogReader
from .syslog import SEND_TIMEOUT, Sink, closed, frame, syslog_hostname, unacknowledged
from .writer import NOT_SHIPPED_EVENT, AuditLog, timestamp

log = logging.getLogger(__name__)

SETTLE = 5.0  # seconds: acknowledged by the receiver's TCP and the connection still up
RETRY_MIN, RETRY_MAX = 0.5, 5.0  # seconds between connection attempts
BATCH_RECORDS, BATCH_BYTES = 256, 256 * 1024
CURSOR_EVERY = 1.0  # seconds between writes of the cursor file
CURSOR_BYTES = 1024  # the cursor file, written in place with one write (its reason included)
IDLE_POLL = 0.5  # seconds: how soon a receiver's closing is noticed when nothing is sent


@dataclass(frozen=True)
class ShipStatus:
    sink: str
    connected: bool
    delivered: int  # seq of the last record delivered
    backlog: int  # records written and not yet delivered
    shipped: int  # records delivered since start
    not_shipped: int  # records never sent since start (the backlog bound, or removed first)
    error: str | None  # why the receiver cannot be reached, while it cannot


@dataclass
class _InFlight:
    link: Link
    end: int  # bytes sent on the connection up to and including this record
    sent: float  # monotonic time it was sent


class Shipper:
    """The sender thread for one log and one receiver."""

    def __init__(self, audit: AuditLog, sink: Sink, *, backlog: int,
                 hostname: str | None = None) -> None:
        self.audit = audit
        self.sink = sink
        self.backlog = backlog
        self.hostname = hostname or syslog_hostname()
        self.cursor_path = audit.path.with_name(audit.path.name + ".shipped")
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="audit-shipper", daemon=True)
        self._sock: socket.socket | None = None
        self._reader = LogReader(audit.path)
        self._inflight: deque[_InFlight] = deque()
        self._sent_bytes = 0
        self._delivered = START
        self._cursor_saved = 0.0
        self._cursor_file: IO[bytes] | None = None
        self.shipped = 0
        self.not_shipped = 0
        self.error: str | None = None
        self._down_since: float | None = None
        self._pid = os.getpid()
        self._drain = 3.0
        self._positioned = False  # the cursor read and the reader placed
        self._sent_max = 0  # the newest record ever sent
        self._gap: tuple[int, int, str] | None = None  # skipped, not yet on record
        # For `doctor`: records never sent to this receiver before this run, the last range.
        self._not_shipped_before = 0
        self._last_gap: list[Any] | None = None

    # -- the writer's side -------------------------------------------------------------

    def start(self) -> None:
        """Start sending; a receiver new to this log gets the records written from now on."""
        self.audit.on_written = self._wake.set
        with contextlib.suppress(OSError):  # the thread tries again, and says why it cannot
            if self._try_lock():
                self._start_position()
        self._thread.start()

    def stop(self, drain: float = 3.0) -> None:
        """Send what was not sent yet (for up to `drain` seconds, if the receiver is
        there), save the cursor and stop. What is not delivered is sent after a restart."""
        self._drain = drain
        self._stopping.set()
        self._wake.set()
        self._thread.join(drain + SEND_TIMEOUT)

    def status(self) -> ShipStatus:
        written = self.audit.last_link().seq
        return ShipStatus(self.sink.url, self._sock is not None, self._delivered.seq,
                          max(0, written - self._delivered.seq), self.shipped,
                          self.not_shipped, self.error)

    # -- the thread --------------------------------------------------------------------

    def _run(self) -> None:
        if not self._positioned:
            try:
                if self._cursor_file is None and not self._wait_for_lock():
                    return
                self._start_position()
            except OSError as exc:
                log.error("cannot ship the audit log %s: %s; records stay in the local log "
                          "only", self.audit.path, exc)
                return
        failures = 0
        try:
            while True:
                try:
                    self._loop()
                    break
                except Exception:  # a sender must never take the agent down, nor give up
                    failures += 1
                    if failures == 1:
                        log.exception("the audit shipper failed; it starts again from its "
                                      "cursor in %.0f s (records wait in the local log)",
                                      RETRY_MAX)
                    self._disconnect()
                    if self._stopping.wait(RETRY_MAX):
                        break
        finally:
            self._settle()
            self._disconnect()
            self._close_gap()
            self._save_cursor(force=True)
            self._reader.close()
            if self._cursor_file is not None:
                self._cursor_file.close()

    def _loop(self) -> None:
        """Send until stopped: connect (again), keep the bound, send, settle, wait."""
        retry = RETRY_MIN
        deadline: float | None = None
        while True:
            if self._stopping.is_set():
                deadline = deadline or time.monotonic() + self._drain
                if self._sock is None or not self._unread() or time.monotonic() > deadline:
                    return
            self._bound()
            if self._sock is None and not self._connect():
                if self._stopping.is_set():
                    return
                self._stopping.wait(retry)  # not woken by writes: no retry per record
                retry = min(retry * 2, RETRY_MAX)
                continue
            retry = RETRY_MIN
            self._close_gap()
            sent = self._send_some()
            self._settle()
            self._save_cursor()
            if not sent:
                self._idle()

    def _try_lock(self) -> bool:
        """Hold the cursor file (one shipper per log); False while another process does."""
        self.cursor_path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(self.cursor_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        self._cursor_file = os.fdopen(fd, "r+b")
        return True

    def _wait_for_lock(self) -> bool:
        log.info("another agent ships the audit log %s; this one ships when it stops",
                 self.audit.path)
        while not self._stopping.is_set():
            if self._try_lock():
                return True
            self._stopping.wait(10.0)
        return False

    def _start_position(self) -> None:
        assert self._cursor_file is not None
        saved: dict[str, Any] = {}
        with contextlib.suppress(ValueError):
            saved = json.loads(self._cursor_file.read() or b"{}")
        end = self.audit.last_link()
        if not isinstance(saved, dict) or saved.get("sink") != self.sink.url or not isinstance(
                saved.get("seq"), int):
            # A new receiver gets the records from now on, not the whole history.
            log.info("shipping the audit log to %s from its record seq %d on", self.sink.url,
                     end.seq + 1)
            self._delivered = end
        else:
            self._delivered = Link(saved["seq"], str(saved.get("hash", "")))
            self._not_shipped_before = int(saved.get("not_shipped") or 0)
            last_gap = saved.get("last_gap")
            self._last_gap = last_gap if isinstance(last_gap, list) else None
            gap = saved.get("gap")  # skipped before a crash, not yet on record
            if isinstance(gap, list) and len(gap) == 3:
                self._gap = (int(gap[0]), int(gap[1]), str(gap[2]))
        self._seek(self._delivered.seq)
        self._positioned = True

    def _seek(self, seq: int) -> None:
        oldest = self._reader.seek_after(seq)
        if oldest is not None:
            self._skip(seq + 1, oldest - 1, "removed from the local log (audit budget) "
                       "before they could be sent")

    def _unread(self) -> bool:
        return self.audit.last_link().seq > self._reader.last.seq

    def _bound(self) -> None:
        """At most `backlog` records wait to be sent: past that, the oldest are not sent."""
        written = self.audit.last_link().seq
        if written - self._reader.last.seq <= self.backlog:
            return
        self._disconnect()  # what is in flight is sent again after the gap, never in it
        first, last = self._delivered.seq + 1, written - self.backlog
        self._delivered = Link(last, "")
        self._seek(last)
        unconfirmed = min(last, self._sent_max)
        self._skip(first, last, f"more than {self.backlog} records waited for the receiver "
                   "(TAILNET_AGENT_AUDIT_SHIP_BACKLOG)" + (
                       f"; seq {first} to {unconfirmed} had been sent before the connection "
                       "broke, without confirmation" if unconfirmed >= first else ""))

    def _skip(self, first: int, last: int, why: str) -> None:
        """Records that will not be sent; one record says so when the receiver is back (or
        at stop), so an outage leaves one record however often the bound cut."""
        count = last - first + 1
        if count <= 0:
            return
        if self._gap is None:
            log.warning("audit records seq %d on are not sent to %s: %s; they are in the local "
                        "log only (a not-shipped record will say which)", first, self.sink.url,
                        why)
            self._gap = (first, last, why)
        else:
            self._gap = (min(first, self._gap[0]), max(last, self._gap[1]), self._gap[2])
        self.not_shipped += count
        self._save_cursor(force=True)

    def _close_gap(self) -> None:
        """Write the not-shipped record of the records skipped (it is shipped next)."""
        if self._gap is None:
            return
        first, last, why = self._gap
        count = last - first + 1
        log.warning("audit records seq %d to %d (%d) were not sent to %s: %s; they are in the "
                    "local log only", first, last, count, self.sink.url, why)
        try:
            self.audit.write({"time": timestamp(), "event": NOT_SHIPPED_EVENT,
                              "sink": self.sink.url, "first_seq": first, "last_seq": last,
                              "records": count, "reason": why})
        except AuditUnavailable as exc:
            log.error("%s (the record of %d records not shipped is lost)", exc, count)
            return
        self._gap = None
        self._last_gap = [first, last, timestamp()]
        self._save_cursor(force=True)

    def _connect(self) -> bool:
        try:
            sock = self.sink.connect()
        except (OSError, ssl.SSLError) as exc:
            self._down(exc)
            return False
        sock.settimeout(SEND_TIMEOUT)
        self._sock, self._sent_bytes = sock, 0
        if self._down_since is not None:
            log.warning("audit receiver %s reachable again after %.0f s: sending the %d "
                        "records that waited", self.sink.url,
                        time.monotonic() - self._down_since,
                        self.audit.last_link().seq - self._delivered.seq)
        self._down_since, self.error = None, None
        return True

    def _down(self, exc: BaseException) -> None:
        self.error = str(exc) or type(exc).__name__
        if self._down_since is None:
            self._down_since = time.monotonic()
            log.warning("audit receiver %s cannot be reached (%s): records wait in the local "
                        "log and are sent when it is back (at most %d; "
                        "TAILNET_AGENT_AUDIT_SHIP_BACKLOG)", self.sink.url, self.error,
                        self.backlog)

    def _disconnect(self) -> None:
        """Close the connection; what was not delivered on it is sent again."""
        if self._sock is not None:
            with contextlib.suppress(OSError):
                self._sock.close()
            self._sock = None
        if self._inflight:
            self._inflight.clear()
        if self._reader.last.seq != self._delivered.seq:
            self._seek(self._delivered.seq)

    def _send_some(self) -> bool:
        """Send the next batch; False when there was nothing to send."""
        assert self._sock is not None
        batch = self._reader.read(BATCH_RECORDS, BATCH_BYTES)
        if not batch:
            return False
        data = bytearray()
        now = time.monotonic()
        for link, record, line in batch:
            data += frame(line, record, self.hostname, self._pid)
            self._inflight.append(_InFlight(link, self._sent_bytes + len(data), now))
        try:
            self._sock.sendall(data)
        except (OSError, ssl.SSLError) as exc:
            self._disconnect()
            self._down(exc)
            return True
        self._sent_bytes += len(data)
        self._sent_max = max(self._sent_max, batch[-1][0].seq)
        return True

    def _settle(self) -> None:
        """Count as delivered what the receiver's TCP acknowledged SETTLE seconds ago."""
        if self._sock is None or not self._inflight:
            return
        try:
            unacked = unacknowledged(self._sock)
        except OSError:
            return
        acked = self._sent_bytes - unacked
        now = time.monotonic()
        while (self._inflight and self._inflight[0].end <= acked
               and now - self._inflight[0].sent >= SETTLE):
            done = self._inflight.popleft()
            self._delivered = done.link
            self.shipped += 1

    def _idle(self) -> None:
        """Wait for a new record, the next record to settle, or the receiver closing."""
        timeout = IDLE_POLL
        if self._inflight:
            timeout = min(timeout, max(0.05, self._inflight[0].sent + SETTLE - time.monotonic()))
        if self._wake.wait(timeout):
            self._wake.clear()
            return
        sock = self._sock
        if sock is None:
            return
        readable, _, _ = select.select([sock], [], [], 0)
        why = closed(sock) if readable else None
        if why is not None:
            self._disconnect()
            self._down(ConnectionError(why))

    def _save_cursor(self, force: bool = False) -> None:
        now = time.monotonic()
        if self._cursor_file is None or (not force and now - self._cursor_saved < CURSOR_EVERY):
            return
        self._cursor_saved = now
        data = json.dumps({"sink": self.sink.url, "seq": self._delivered.seq,
                           "hash": self._delivered.hash, "gap": self._gap,
                           "not_shipped": self._not_shipped_before + self.not_shipped,
                           "last_gap": self._last_gap, "time": timestamp()}).encode()
        with contextlib.suppress(OSError):
            os.pwrite(self._cursor_file.fileno(), data.ljust(CURSOR_BYTES), 0)
            os.ftruncate(self._cursor_file.fileno(), CURSOR_BYTES)


def read_cursor(audit_path: Path) -> dict[str, Any] | None:
    """The cursor a shipper saved for this log (for `doctor`), or None."""
    try:
        data = json.loads(audit_path.with_name(audit_path.name + ".shipped").read_bytes()
                          or b"null")
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None

