"""Run whitelisted commands on hosts over SSH: one pooled asyncssh connection per host.

Each host gets one connection, opened lazily by one attempt at a time (connect.py),
reused, and reopened after a drop. `ChannelSlots` bounds the channels open per
connection below sshd's MaxSessions. Connections unused for a while close, and at most
a set number are open at once (retention.py); neither ever closes one with a call in
flight. Commands arrive already rendered by the
whitelist and are sent only as `wrap_for_exec(...)` (an exec channel) or
`wrap_for_shell(...)` (a persistent shell) produce them; this package
never builds a command line of its own (apart from the fixed shell probe).

Two ways to run a command: short read-only ones go to a persistent shell channel
(the fast path, shell.py: about 1.3 ms less per call on loopback); destructive or
long ones, the first call on a new connection, and anything the fast path cannot take,
get their own exec channel (exec.py). Both report through output.to_result. A new
connection's first call opens no shell because many never get a second one: a cold
fan-out asks each host once, and a host asked once is closed idle later; a shell costs a
channel, a shell process on the host and a handshake (a cold 300-host fan-out went
from 1.42-1.54 to 1.26-1.32 times its SSH-layer floor, load 9-14); the second call
opens it, and the calls after reuse it.

A call given up before its command ended (the caller cancelled, the client went
away, our backup timer fired) stops the command's whole process group on the host
first, and only then closes its channel and frees its slot, so nothing it started
keeps running or keeps an sshd session (giveup.py, reap.py); the call returns (raises
CancelledError) only once that is done, however often it is cancelled meanwhile. Channel
opens run shielded, so a cancel never leaves a half-open channel behind. Cancelling the
task that awaits `SSHPool.run` is all a front end has to do.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Coroutine, Mapping
from contextlib import suppress
from pathlib import Path
from typing import Any

import asyncssh

from agent.errors import UnknownHost
from agent.hosts.inventory import HostConfig
from agent.output.results import CommandResult
from agent.output.spool import CommandOutput, stderr_cap
from whitelist import MAX_TIMEOUT, wrap_for_exec, wrap_for_shell

from .collected import to_result
from .connect import connect, probe
from .dial import Connector
from .errors import ChannelRefused, ConnectionDropped, SSHError
from .exec import CLIENT_GRACE_SECONDS, CappedSession, wait_exec
from .giveup import GiveUp, after_open, stop_channel
from .pooled_host import NOT_YET, HostState
from .reap import PgidReader
from .retention import Retention
from .shell import Shell, ShellUnusable, open_shell
from .slots import ChannelSlots

log = logging.getLogger(__name__)

# Refused channel opens retried before giving up (about 0.6 s in all).
OPEN_RETRIES = 6
# The fast path takes read-only commands up to this timeout; longer ones may stream
# for a long time and are better off on their own exec channel.
FAST_PATH_MAX_TIMEOUT = 60.0
SHELL_OPEN_TIMEOUT_SECONDS = 10.0
# After this many shells in a row failed to open cleanly, a host uses exec only.
SHELL_FAILURES_BEFORE_OFF = 3
KILL_WAIT_ON_CLOSE = 5.0


class SSHPool:
    def __init__(
        self,
        hosts: Mapping[str, HostConfig],
        *,
        connector: Connector | None = None,
        max_sessions: int = 8,
        connect_timeout: float = 15.0,
        fast_path: bool = True,
        spool_dir: Path | None = None,  # where output beyond memory spills (default: $TMPDIR)
        idle_timeout: float = 600.0,  # seconds a connection nothing uses stays open
        max_connections: int = 1000,  # connections open (or opening) at once
    ) -> None:
        if max_sessions < 1:
            raise ValueError("max_sessions must be at least 1")
        self._connector = connector
        self._connect_timeout = connect_timeout
        self.fast_path = fast_path
        self.spool_dir = spool_dir
        self._max_sessions = max_sessions
        # A live mapping (agent.hosts.registry.HostRegistry): tailnet hosts come and go.
        self._configs = hosts
        self._hosts: dict[str, HostState] = {}
        self._retiring: set[asyncio.Task[None]] = set()  # hosts gone, calls still on them
        self._giveup = GiveUp()
        # A call waiting for room at the cap waits as long as it would for a connection.
        self._retention = Retention(idle_seconds=idle_timeout, cap=max_connections,
                                    wait_seconds=connect_timeout, close=_close)

    # -- public API ---------------------------------------------------------

    async def run(
        self,
        host: str,
        rendered: str,
        *,
        command_name: str,
        timeout: float,  # noqa: ASYNC109 - the remote `timeout` enforces it, we back it up
        max_output: int,
        destructive: bool = False,  # state-changing commands always take the plain exec path
        become: str | None = None,  # run through `sudo -n -u USER` (rendered by the whitelist)
        output: CommandOutput | None = None,  # where the output goes (and who listens live)
    ) -> CommandResult:
        state = self._state(host)
        if output is None:
            output = CommandOutput(max_output, stderr_cap(max_output), directory=self.spool_dir)
        if (
            self.fast_path
            and not destructive
            and timeout <= FAST_PATH_MAX_TIMEOUT
            and state.shell_failures < SHELL_FAILURES_BEFORE_OFF
            and state.live() is not None  # a connection's first call opens no shell
        ):
            fast = await self._run_on_shell(
                state, wrap_for_shell(rendered, timeout=timeout, become=become), rendered,
                command_name, timeout, max_output, output)
            if fast is not None:
                return fast
        wrapped = wrap_for_exec(rendered, timeout=timeout, become=become)
        await state.slots.acquire()
        given_up = asyncio.Event()
        started = time.monotonic()
        opening = asyncio.create_task(
            self._open_exec(state, wrapped, command_name, output, given_up))

        def stop() -> Coroutine[Any, Any, None]:
            """Stop the command (once its open has finished), then free the slot."""
            return after_open(opening, lambda opened: stop_channel(
                state.reaper, opened[0], opened[1].reader), state.slots.release)

        try:
            chan, session = await asyncio.shield(opening)
            client_killed = await wait_exec(session, timeout)
        except asyncio.CancelledError:
            given_up.set()
            await self._giveup.run(stop())
            raise
        except BaseException:  # the open failed: nothing runs
            state.slots.release()
            raise
        if client_killed:  # it outlived our backup timer: stopped like a cancelled call
            await self._giveup.run(stop())
        else:
            chan.close()
            state.slots.release()
        elapsed = time.monotonic() - started
        return to_result(session, host=host, command_name=command_name, rendered=rendered,
                         max_output=max_output, timeout=timeout, elapsed=elapsed,
                         client_killed=client_killed)

    def stopped(self, host: str) -> int:
        """Process groups killed on `host` after their callers gave up (since start)."""
        return self._state(host).reaper.killed

    async def connection_status(self) -> dict[str, dict[str, Any]]:
        return {
            name: {"address": config.address, "port": config.port, "user": config.user,
                   **(state.status() if state is not None else NOT_YET)}
            for name, config in self._configs.items()
            for state in [self._hosts.get(name)]
        }

    def connections(self) -> dict[str, float | int]:
        """Connections open, the cap, the idle time, and how many were closed for each."""
        return self._retention.status()

    def prune(self) -> None:
        """Retire the connections of hosts that left (or changed), e.g. a tailnet peer gone."""
        for name in list(self._hosts):
            if self._configs.get(name) != self._hosts[name].config:
                self._retire(self._hosts.pop(name))

    def _retire(self, state: HostState) -> None:
        """New calls no longer reach `state`; its connection closes once the calls still on
        it have ended, so a command running there finishes (or, given up, is still stopped
        through it) instead of being cut off and left running on the host."""
        if not state.in_use():
            self._close(state)
            return
        task = asyncio.create_task(self._close_when_done(state),
                                   name=f"retire-{state.config.name}")
        self._retiring.add(task)
        task.add_done_callback(self._retiring.discard)

    async def _close_when_done(self, state: HostState) -> None:
        try:  # at most as long as a call may run
            with suppress(TimeoutError):
                await asyncio.wait_for(self._retention.until_unused(state),
                                       MAX_TIMEOUT + KILL_WAIT_ON_CLOSE)
        finally:
            self._close(state)

    def _close(self, state: HostState) -> None:
        _close(state)
        self._retention.closed(state)

    def shells(self, host: str) -> int:
        """Idle persistent shells held for `host` (the fast path's pool)."""
        return len(self._state(host).slots.idle)

    async def check_host(self, host: str) -> float:
        """Connect (or reuse the connection) and run the shell probe; returns milliseconds."""
        state = self._state(host)
        started = time.monotonic()
        await state.slots.acquire()
        try:
            existing = state.live()
            conn = await self._connection(state)
            if conn is existing:
                try:
                    await probe(state.config, conn)
                except SSHError as exc:
                    state.failed(exc)
                    conn.close()
                    raise
                state.shell_ok = True
        finally:
            state.slots.release()
        return (time.monotonic() - started) * 1000

    async def close(self) -> None:
        await self._giveup.wait(KILL_WAIT_ON_CLOSE)  # kills still on their way first
        await self._retention.stop()
        for task in list(self._retiring):  # hosts that left: close theirs now too
            task.cancel()
            with suppress(asyncio.CancelledError):
                await task
        conns = [conn for state in self._hosts.values() if (conn := state.drop()) is not None]
        for state in self._hosts.values():
            self._retention.closed(state)
        for conn in conns:
            conn.close()
        for conn in conns:
            with suppress(Exception):
                await asyncio.wait_for(conn.wait_closed(), 5)

    # -- connections ----------------------------------------------------------

    def _state(self, host: str) -> HostState:
        config = self._configs.get(host)
        if config is None:
            raise UnknownHost(host, self._configs)
        state = self._hosts.get(host)
        if state is None or state.config != config:
            if state is not None:  # its address, keys or login changed: start afresh
                self._retire(state)
            state = self._hosts[host] = HostState(config, ChannelSlots(self._max_sessions))
            state.slots.on_idle = lambda: self._retention.released(state)
        return state

    async def _connection(self, state: HostState) -> asyncssh.SSHClientConnection:
        """The host's live connection, or the one being opened (one attempt at a time,
        shared by every caller waiting for it, failure included), once there is room for
        it under the cap. The attempt runs as its own task: a caller who is cancelled
        meanwhile leaves at once (asyncssh's connect can swallow a cancel on Python 3.11),
        and the connection is kept for the next. While a caller waits here, the host
        counts as in use: neither the cap nor the idle timer closes it under them."""
        conn = state.live()
        if conn is not None:  # the common case, without a suspension point
            self._retention.used(state)
            return conn
        state.waiting += 1
        try:
            while True:
                conn = state.live()
                if conn is not None:
                    self._retention.used(state)
                    return conn
                if state.connecting is not None and not state.connecting.done():
                    return await asyncio.shield(state.connecting)
                await self._retention.room(state)
                if state.live() is None and (state.connecting is None
                                             or state.connecting.done()):
                    self._retention.opening(state)
                    state.connecting = asyncio.create_task(self._connect(state))
                    # Retrieved here, so that an attempt nobody waits for any more is not
                    # reported as an exception never retrieved.
                    state.connecting.add_done_callback(lambda t: t.cancelled() or t.exception())
        finally:
            state.waiting -= 1
            if not state.waiting:
                self._retention.released(state)

    async def _connect(self, state: HostState) -> asyncssh.SSHClientConnection:
        state.conn = None
        state.attempts += 1
        try:
            conn = await connect(state.config, connector=self._connector,
                                 timeout=self._connect_timeout)
        except BaseException as exc:
            self._retention.closed(state)
            if isinstance(exc, SSHError):
                state.failed(exc)
            raise
        attempt = asyncio.current_task()
        if attempt is not None and attempt.cancelling():
            # Dropped while opening (pool closed, host gone) and the cancel swallowed on the
            # way (asyncssh can, on 3.11): the connection is not installed, so nothing sees
            # the host connected after it was closed.
            self._retention.closed(state)
            conn.close()
            raise asyncio.CancelledError
        state.conn, state.last_error = conn, None
        state.shell_ok = True
        self._retention.used(state)
        return conn

    # -- commands -----------------------------------------------------------

    async def _run_on_shell(
        self,
        state: HostState,
        wrapped: str,
        rendered: str,
        command_name: str,
        timeout: float,  # noqa: ASYNC109
        max_output: int,
        output: CommandOutput,
    ) -> CommandResult | None:
        """Run on a persistent shell; None when no shell could take it and nothing ran."""
        conn = await self._connection(state)  # connection errors are the same on both paths
        shell = await state.slots.take_shell(lambda s: s.usable(conn))
        if shell is None:
            opening = asyncio.create_task(self._new_shell(state, conn))
            try:
                shell = await asyncio.shield(opening)
            except asyncio.CancelledError:
                await self._giveup.run(after_open(opening, self._discarder(state), _nothing))
                raise
            if shell is None:
                return None
        started = time.monotonic()
        call = shell.start(wrapped, output)
        client_killed = False
        try:
            async with asyncio.timeout(timeout + CLIENT_GRACE_SECONDS):  # (no task, as wait_for)
                await call.done.wait()
        except TimeoutError:
            client_killed = True
            await self._giveup.run(self._stop_shell(state, shell, call.reader))
        except BaseException:
            # Cancelled: stop what the frame runs, then drop the shell (a half-read frame
            # is never reused) and free the slot, in that order.
            await self._giveup.run(self._stop_shell(state, shell, call.reader))
            raise
        if client_killed:
            pass  # stopped and dropped already
        elif call.clean and call.exit_status not in (124, 137):
            state.slots.give_back(shell)
        else:  # a command the remote `timeout` stopped leaves a shell we no longer trust
            state.slots.discard(shell)
        if call.lost is not None and not call.started and call.doubt is None:
            # The shell was gone before it printed anything for this call, so the
            # command almost certainly did not start, and fast-path commands are
            # read-only: running it on an exec channel (which reconnects) is safe.
            log.info("a persistent shell to %s was gone; using an exec channel", state.config.name)
            if state.conn is conn and conn.is_closed():
                state.conn = None
            return None
        if call.lost is None and call.doubt is not None:
            # Not a lost connection, but the result is as uncertain: say so in stderr.
            call.lost = ConnectionError(f"the shell's output framing broke: {call.doubt}")
        elapsed = time.monotonic() - started
        return to_result(call, host=state.config.name, command_name=command_name,
                         rendered=rendered, max_output=max_output, timeout=timeout,
                         elapsed=elapsed, client_killed=client_killed)

    async def _stop_shell(self, state: HostState, shell: Shell, reader: PgidReader) -> None:
        try:
            await stop_channel(state.reaper, shell.chan, reader, close=shell.kill)
        finally:
            state.slots.discard(shell)

    @staticmethod
    def _discarder(state: HostState) -> Callable[[Shell], Coroutine[Any, Any, None]]:
        async def discard(shell: Shell) -> None:
            state.slots.discard(shell)  # no command was sent to it
        return discard

    async def _open_shell(self, conn: asyncssh.SSHClientConnection) -> Shell:
        for refusals in range(OPEN_RETRIES + 1):
            try:
                return await open_shell(conn, SHELL_OPEN_TIMEOUT_SECONDS)
            except asyncssh.ChannelOpenError:
                # sshd frees a closed session a moment late (see _open_exec): not a failure
                # of persistent shells, a refusal to retry.
                if refusals == OPEN_RETRIES or conn.is_closed():
                    raise
                await asyncio.sleep(0.005 * 2 ** (refusals + 1))
        raise AssertionError("unreachable")

    async def _new_shell(
        self, state: HostState, conn: asyncssh.SSHClientConnection
    ) -> Shell | None:
        """Open a shell in the slot the caller holds; on failure give the slot back."""
        try:
            shell = await self._open_shell(conn)
        except (OSError, TimeoutError, asyncssh.Error, ShellUnusable) as exc:
            state.slots.release()
            if not conn.is_closed():
                state.shell_failures += 1
                if state.shell_failures >= SHELL_FAILURES_BEFORE_OFF:
                    log.warning(
                        "persistent shells on %s keep failing (%s); using exec channels only",
                        state.config.name,
                        exc,
                    )
            return None
        except BaseException:
            state.slots.release()
            raise
        state.shell_failures = 0
        return shell

    async def _open_exec(
        self, state: HostState, wrapped: str, command_name: str, output: CommandOutput,
        given_up: asyncio.Event,
    ) -> tuple[asyncssh.SSHClientChannel[bytes], CappedSession]:
        host = state.config
        reconnected = False
        refusals = 0
        while True:
            conn = await self._connection(state)
            opened = False

            def factory() -> CappedSession:
                # asyncssh calls this once the channel is open, just before the exec request.
                nonlocal opened
                opened = True
                return CappedSession(output)

            if given_up.is_set():  # the caller left while we connected: start nothing
                raise ConnectionAbortedError("the call was given up before its command started")

            try:
                chan, session = await conn.create_session(factory, wrapped, encoding=None)
            except (OSError, asyncssh.Error) as exc:
                dead = conn.is_closed()
                if dead and state.conn is conn:
                    state.conn = None
                if dead and not opened and not reconnected:
                    # The channel never opened, so the command never started: safe to retry.
                    log.info("connection to %s was gone; reconnecting", host.name)
                    reconnected = True
                    continue
                if (
                    isinstance(exc, asyncssh.ChannelOpenError)
                    and refusals < OPEN_RETRIES
                    and not dead
                ):
                    # sshd frees a session slot a moment after it closes the channel, so
                    # at full concurrency an open can be refused briefly. Nothing ran.
                    refusals += 1
                    await asyncio.sleep(0.005 * 2**refusals)
                    continue
                if dead:
                    raise ConnectionDropped(
                        host.name,
                        f"the connection to {host.name} dropped while starting {command_name!r}; "
                        "it may or may not have run. Check the host, then run it again",
                    ) from None
                raise ChannelRefused(
                    host.name,
                    f"{host.name} refused to start {command_name!r}: {exc}; check sshd's "
                    "MaxSessions there (it must exceed TAILNET_AGENT_MAX_SESSIONS)",
                ) from None
            chan.write_eof()
            assert isinstance(session, CappedSession)
            return chan, session


def _nothing() -> None:
    """An open that failed or was discarded has given its slot back already."""


def _close(state: HostState) -> None:
    conn = state.drop()
    if conn is not None:
        conn.close()
