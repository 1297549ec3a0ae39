"""The fast path: short read-only commands on persistent `/bin/sh` channels.

An exec channel costs a channel open, a login shell started by sshd and a close
for every command. A shell channel kept open skips all three; it receives the
text of `wrap_for_shell(...)` (what `wrap_for_exec(...)` runs, with a process less for a
plain command line), inside a fixed frame:

    printf 'S%s\\n' TOKEN; printf 'S%s\\n' TOKEN >&2;
    { { { WRAPPED ; } 6>&1 >&5 5>&-; echo $?; } |
      { read -r s; while read -r _; do :; done;
        printf 'E%s %s\\n' TOKEN "$s" >&2; printf 'E%s %s\\n' TOKEN "$s"; }; } 5>&1

- TOKEN is `secrets.token_hex(16)`, fresh per call: output cannot forge a marker.
  Nothing caller-controlled enters the frame except WRAPPED, already quoted.
- stdout and stderr are separate SSH streams, so each gets a start marker and an
  end marker carrying the exit status; a call is complete when both ended with
  the same status.
- WRAPPED writes straight to the channel (fd 5 is the channel's stdout) and
  holds fd 6, the write end of a pipe. The right side reads the status and then
  waits for EOF on that pipe, i.e. until every process the command left behind
  has exited. This keeps the exec path's meaning: a command is finished when
  nothing it started can still write, so late output never lands in the next call.
- stdin of the command is /dev/null (WRAPPED says so), so nothing can eat the
  frames of later calls.
- Any doubt (bytes outside a frame, a broken marker, a cap reached, a timeout,
  a cancelled caller) discards the channel; a new one is opened on demand.

Channels on one connection, busy or idle, are counted by `ChannelSlots`
(agent/ssh/slots.py) against one limit below sshd's MaxSessions; an exec that
finds no free slot closes an idle shell to make room.
"""

from __future__ import annotations

import asyncio
import re
import secrets
import time
from collections.abc import Callable
from contextlib import suppress

import asyncssh

from agent.output.spool import CommandOutput

from .reap import PgidReader

SHELL_COMMAND = "exec /bin/sh"  # fixed; the login shell only has to parse this
# Shells unused this long are closed when the pool next looks at them.
IDLE_SECONDS = 300.0

_FRAME = (
    "printf 'S%s\\n' {token}; printf 'S%s\\n' {token} >&2; "
    "{{ {{ {{ {wrapped} ; }} 6>&1 >&5 5>&-; echo $?; }} | "
    "{{ read -r s; while read -r _; do :; done; "
    "printf 'E%s %s\\n' {token} \"$s\" >&2; printf 'E%s %s\\n' {token} \"$s\"; }}; }} 5>&1\n"
)
# Opening handshake: proves both streams are clean before the first real call.
_HELLO = (
    "printf 'S%s\\n' {token}; printf 'S%s\\n' {token} >&2; "
    "printf 'E%s 0\\n' {token} >&2; printf 'E%s 0\\n' {token}\n"
)
_MAX_STATUS_DIGITS = 3
_TOKEN = re.compile(r"[0-9a-f]+")


def frame(wrapped: str, token: str) -> str:
    """The text sent to the shell for one call. `token` must be our own hex."""
    if not _TOKEN.fullmatch(token):
        raise ValueError("the frame token must be lowercase hex")
    return _FRAME.format(token=token, wrapped=wrapped)


class FrameStream:
    """One stream (stdout or stderr) of one call: start marker, body, end marker + status."""

    def __init__(self, token: str, keep: Callable[[bytes], bool],
                 reader: PgidReader | None = None) -> None:
        if not _TOKEN.fullmatch(token):
            # _marker_start relies on it: "E" is then only ever the marker's first byte.
            raise ValueError("the frame token must be lowercase hex")
        self._start = f"S{token}\n".encode()
        self._reader = reader  # stderr: takes the wrapper's process-group report off
        self._end = f"E{token} ".encode()
        self._buf = b""
        self._keep_body = keep  # stores body bytes; False once the stream's cap was reached
        self.state = "start"  # start -> body -> status -> done
        self.overflow = False
        self.status: int | None = None
        self.doubt: str | None = None

    @property
    def started(self) -> bool:
        return self.state != "start"

    @property
    def done(self) -> bool:
        return self.state == "done"

    def feed(self, data: bytes) -> None:
        if self.doubt is not None or self.overflow:
            return
        if self.state == "done":
            if data:
                self.doubt = "output after the end marker"
            return
        buf = self._buf + data
        self._buf = b""
        if self.state == "start":
            if len(buf) < len(self._start):
                if not self._start.startswith(buf):
                    self.doubt = "output before the start marker"
                self._buf = buf
                return
            if not buf.startswith(self._start):
                self.doubt = "output before the start marker"
                return
            buf = buf[len(self._start) :]
            self.state = "body"
        if self.state == "body":
            at = buf.find(self._end)
            if at < 0:
                # Hold back a tail that may be the first part of a split end marker (only
                # that: the process-group report must get through while the command runs).
                hold = self._marker_start(buf)
                self._keep(buf[: len(buf) - hold])
                self._buf = buf[len(buf) - hold :]
                return
            self._keep(buf[:at])
            if self.overflow:
                return
            buf = buf[at + len(self._end) :]
            self.state = "status"
        if self.state == "status":
            newline = buf.find(b"\n")
            digits = buf if newline < 0 else buf[:newline]
            if len(digits) > _MAX_STATUS_DIGITS or (digits and not digits.isdigit()):
                self.doubt = "a malformed end marker"
                return
            if newline < 0:
                self._buf = buf
                return
            if not digits:
                self.doubt = "an end marker without an exit status"
                return
            self.status = int(digits)
            self.state = "done"
            if buf[newline + 1 :]:
                self.doubt = "output after the end marker"

    def _marker_start(self, buf: bytes) -> int:
        """Length of the longest tail of `buf` that begins the end marker. The marker is
        "E", lowercase hex and a space, so such a tail starts at the last "E" of the
        marker's length of tail, or there is none: one search, not one try per length."""
        at = buf.rfind(b"E", max(0, len(buf) - len(self._end) + 1))
        if at >= 0 and self._end.startswith(buf[at:]):
            return len(buf) - at
        return 0

    def _keep(self, data: bytes) -> None:
        if self._reader is not None:
            data = self._reader.feed(data)  # the wrapper's report is not the command's output
        if data and not self._keep_body(data):
            self.overflow = True

    def flush(self) -> None:
        """The call ended without an end marker: bytes held back are output after all."""
        if self.state == "body" and self._buf:
            self._keep(self._buf)
            self._buf = b""
        if self._reader is not None:
            held = self._reader.flush()
            if held:
                self._keep(held)



class ShellCall:
    """What one framed call received; shaped like the exec path's collected output."""

    def __init__(self, token: str, output: CommandOutput) -> None:
        self.token = token
        self.output = output
        self.reader = PgidReader()  # the wrapper's report of the command's process group
        self._out = FrameStream(token, lambda data: output.feed(False, data))
        self._err = FrameStream(token, lambda data: output.feed(True, data), self.reader)
        self.streams = {None: self._out, asyncssh.EXTENDED_DATA_STDERR: self._err}
        self.done = asyncio.Event()
        self.lost: Exception | None = None
        self.exit_signal: str | None = None  # a shell reports signals as statuses > 128

    @property
    def overflow(self) -> dict[int | None, bool]:
        return {key: stream.overflow for key, stream in self.streams.items()}

    @property
    def started(self) -> bool:
        """True once any marker of this call arrived: from then on the command may have run."""
        return any(stream.started for stream in self.streams.values())

    @property
    def doubt(self) -> str | None:
        for stream in self.streams.values():
            if stream.doubt is not None:
                return stream.doubt
        out, err = self.streams.values()
        if out.done and err.done and out.status != err.status:
            return "end markers with different statuses"
        return None

    @property
    def complete(self) -> bool:
        return all(s.done for s in self.streams.values()) and self.doubt is None

    @property
    def clean(self) -> bool:
        """Complete, nothing odd, nothing cut: the shell may serve another call."""
        return self.complete and self.lost is None and not any(self.overflow.values())

    @property
    def exit_status(self) -> int | None:
        return self.streams[None].status if self.complete else None

    def feed(self, data: bytes, stderr: bool) -> None:
        stream, other = (self._err, self._out) if stderr else (self._out, self._err)
        stream.feed(data)
        # Over once complete, in doubt or capped: only the stream just fed can have become
        # so (the other one's state was looked at when it was fed).
        if stream.doubt is not None or stream.overflow or (stream.done and other.done):
            self.done.set()

    def channel_lost(self, exc: Exception | None) -> None:
        if not self.complete:
            self.lost = exc or ConnectionError("the shell channel closed")
        self.done.set()

    def flush(self) -> None:
        """The call is over: output held back as a possible marker is output after all."""
        for stream in self.streams.values():
            stream.flush()


class ShellSession(asyncssh.SSHClientSession[bytes]):
    """Routes a shell channel's bytes to the call in progress; bytes between calls taint it."""

    def __init__(self) -> None:
        self.call: ShellCall | None = None
        self.dirty = False
        self.closed = False

    def data_received(self, data: bytes, datatype: asyncssh.DataType) -> None:
        if self.call is None:
            self.dirty = True
            return
        self.call.feed(data, stderr=bool(datatype))

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.call is not None:
            self.call.channel_lost(exc)


class Shell:
    """One persistent `/bin/sh` channel on one SSH connection."""

    def __init__(
        self,
        conn: asyncssh.SSHClientConnection,
        chan: asyncssh.SSHClientChannel[bytes],
        session: ShellSession,
    ) -> None:
        self.conn = conn
        self.chan = chan
        self.session = session
        self.last_used = time.monotonic()

    def usable(self, conn: asyncssh.SSHClientConnection | None) -> bool:
        return (
            self.conn is conn
            and not self.session.closed
            and not self.session.dirty
            and not self.conn.is_closed()
            and time.monotonic() - self.last_used < IDLE_SECONDS
        )

    def start(self, wrapped: str, output: CommandOutput) -> ShellCall:
        token = secrets.token_hex(16)
        call = ShellCall(token, output)
        self._send(call, frame(wrapped, token))
        return call

    def hello(self) -> ShellCall:
        token = secrets.token_hex(16)
        call = ShellCall(token, CommandOutput(0, 0))
        self._send(call, _HELLO.format(token=token))
        return call

    def _send(self, call: ShellCall, text: str) -> None:
        self.session.call = call
        try:
            self.chan.write(text.encode())
        except (OSError, asyncssh.Error) as exc:
            call.channel_lost(exc)

    def finish(self) -> None:
        self.session.call = None
        self.last_used = time.monotonic()

    def kill(self) -> None:
        """Stop the shell and whatever it runs; the channel is never reused."""
        self.session.call = None
        self.session.dirty = True
        with suppress(Exception):
            self.chan.send_signal("KILL")
        self.chan.close()


async def open_shell(conn: asyncssh.SSHClientConnection, timeout: float) -> Shell:  # noqa: ASYNC109
    """Open a shell channel and check with a handshake that its streams are clean."""
    chan, session = await conn.create_session(ShellSession, SHELL_COMMAND, encoding=None)
    assert isinstance(session, ShellSession)
    shell = Shell(conn, chan, session)
    call = shell.hello()
    try:
        await asyncio.wait_for(call.done.wait(), timeout)
    except BaseException:  # timed out, or our caller was cancelled: never leave it open
        shell.kill()
        raise
    if not call.clean:
        shell.kill()
        reason = call.doubt or (str(call.lost) if call.lost else "no answer")
        raise ShellUnusable(f"a persistent shell did not answer cleanly ({reason})")
    shell.finish()
    return shell


class ShellUnusable(Exception):
    pass
