"""Run whitelisted commands on hosts over SSH: one pooled asyncssh connection per host.

Each host gets one connection, opened lazily under a per-host lock, reused, and
reopened after a drop. `ChannelSlots` bounds the channels open per connection
below sshd's MaxSessions. Commands arrive already rendered by the whitelist and
are sent only as `wrap_for_exec(...)` produces them; this module never builds a
command line of its own (apart from the fixed shell probe).

Two ways to run a command: short read-only ones go to a persistent shell channel
(the fast path, see shellpool.py: about 1.3 ms less per call on loopback);
destructive or long ones, and anything the fast path cannot take, get their own
exec channel.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import Awaitable, Callable, Mapping
from contextlib import suppress
from dataclasses import dataclass, field
from typing import Any

import asyncssh

from agent.config import HostConfig
from agent.hostkeys import (
    fetch_host_key,
    fingerprint,
    is_trusted,
    known_hosts_matcher,
    trusted_keys,
)
from agent.results import CommandResult
from agent.shellpool import ChannelSlots, Shell, ShellCall, ShellUnusable, open_shell
from whitelist import wrap_for_exec

log = logging.getLogger(__name__)

Connector = Callable[[str, int], Awaitable[socket.socket]]

STDERR_CAP = 64 * 1024
# After the remote `timeout` should have fired (and its KILL 2 s later), give the
# channel this long before killing it from our side.
CLIENT_GRACE_SECONDS = 5.0
# Refused channel opens retried before giving up (about 0.6 s in all).
OPEN_RETRIES = 6
PROBE_TIMEOUT_SECONDS = 10.0
# AES-GCM first: one C call per packet in asyncssh where chacha20-poly1305 takes
# several, about 40 us less client CPU per command (measured); all three are AEADs.
ENCRYPTION_ALGS = (
    "aes128-gcm@openssh.com",
    "aes256-gcm@openssh.com",
    "chacha20-poly1305@openssh.com",
    "aes128-ctr",
    "aes192-ctr",
    "aes256-ctr",
)
# The fast path takes read-only commands up to this timeout; longer ones may stream
# for a long time and are better off on their own exec channel.
FAST_PATH_MAX_TIMEOUT = 60.0
SHELL_OPEN_TIMEOUT_SECONDS = 10.0
# After this many shells in a row failed to open cleanly, a host uses exec only.
SHELL_FAILURES_BEFORE_OFF = 3
# `$((...))` is POSIX arithmetic that fish, csh/tcsh and nushell reject; `timeout`
# is what wrap_for_exec relies on to kill runaway commands.
SHELL_PROBE = (
    'test "$((6*7))" = 42 && printf posix-ok; '
    "command -v timeout >/dev/null 2>&1 && printf ' timeout-ok'"
)


class SSHError(Exception):
    """An SSH failure explained for a person: what failed, on which host, what to do next."""

    def __init__(self, host: str, message: str) -> None:
        super().__init__(message)
        self.host = host


class _HostKeyError(SSHError):
    def __init__(self, host: str, message: str, fingerprint: str | None) -> None:
        super().__init__(host, message)
        self.fingerprint = fingerprint


class HostKeyUnknown(_HostKeyError):
    pass


class HostKeyChanged(_HostKeyError):
    pass


class AuthenticationFailed(SSHError):
    pass


class HostUnreachable(SSHError):
    pass


class ShellNotPosix(SSHError):
    pass


async def open_socket(
    host: HostConfig,
    connector: Connector | None,
    timeout: float,  # noqa: ASYNC109
) -> socket.socket | None:
    """Dial through `connector` (the tailnet's SOCKS5 dialer); None means asyncssh dials itself."""
    if connector is None:
        return None
    try:
        return await asyncio.wait_for(connector(host.address, host.port), timeout)
    except (OSError, TimeoutError, ConnectionError) as exc:
        raise HostUnreachable(host.name, _unreachable(host, exc)) from None


def _unreachable(host: HostConfig, exc: BaseException) -> str:
    reason = "timed out" if isinstance(exc, TimeoutError) else (str(exc) or type(exc).__name__)
    return (
        f"cannot reach {host.name} at {host.address}:{host.port} ({reason}); check that the "
        "host is up (and online in the tailnet), that sshd listens on that port, "
        "and the address in the host configuration"
    )


@dataclass
class _HostState:
    config: HostConfig
    slots: ChannelSlots
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    conn: asyncssh.SSHClientConnection | None = None
    last_error: str | None = None
    last_failure: SSHError | None = None
    attempts: int = 0  # connection attempts so far, successful or not
    shell_ok: bool | None = None
    shell_failures: int = 0  # persistent shells that failed to open, in a row

    def live(self) -> asyncssh.SSHClientConnection | None:
        if self.conn is not None and not self.conn.is_closed():
            return self.conn
        return None


class _CappedSession(asyncssh.SSHClientSession[bytes]):
    """Collects stdout/stderr up to fixed caps; past a cap it closes the channel."""

    def __init__(self, stdout_cap: int, stderr_cap: int) -> None:
        self._caps = {None: stdout_cap, asyncssh.EXTENDED_DATA_STDERR: stderr_cap}
        self._chunks: dict[int | None, list[bytes]] = {None: [], asyncssh.EXTENDED_DATA_STDERR: []}
        self._kept: dict[int | None, int] = {None: 0, asyncssh.EXTENDED_DATA_STDERR: 0}
        self.overflow: dict[int | None, bool] = {None: False, asyncssh.EXTENDED_DATA_STDERR: False}
        self.exit_status: int | None = None
        self.exit_signal: str | None = None
        self.lost: Exception | None = None  # set when the connection died under the channel
        self.done: asyncio.Event = asyncio.Event()
        self._chan: asyncssh.SSHClientChannel[bytes] | None = None

    def connection_made(self, chan: asyncssh.SSHClientChannel[bytes]) -> None:
        self._chan = chan

    def data_received(self, data: bytes, datatype: asyncssh.DataType) -> None:
        stream = asyncssh.EXTENDED_DATA_STDERR if datatype else None
        if self.overflow[stream]:
            return
        room = self._caps[stream] - self._kept[stream]
        if len(data) > room:
            data = data[:room]
            self.overflow[stream] = True
            # Stop the transfer: keeping memory bounded is not enough, a 50 MB
            # answer should not cross the tailnet only to be thrown away.
            if self._chan is not None:
                self._chan.close()
        if data:
            self._chunks[stream].append(data)
            self._kept[stream] += len(data)

    def exit_status_received(self, status: int) -> None:
        self.exit_status = status

    def exit_signal_received(self, signal: str, core_dumped: bool, msg: str, lang: str) -> None:
        self.exit_signal = signal

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = exc
        self.done.set()

    def text(self, stderr: bool) -> str:
        stream = asyncssh.EXTENDED_DATA_STDERR if stderr else None
        return b"".join(self._chunks[stream]).decode("utf-8", errors="replace")


class SSHPool:
    def __init__(
        self,
        hosts: Mapping[str, HostConfig],
        *,
        connector: Connector | None = None,
        max_sessions: int = 8,
        connect_timeout: float = 15.0,
        fast_path: bool = True,
    ) -> None:
        if max_sessions < 1:
            raise ValueError("max_sessions must be at least 1")
        self._connector = connector
        self._connect_timeout = connect_timeout
        self.fast_path = fast_path
        self._hosts = {
            name: _HostState(cfg, ChannelSlots(max_sessions)) for name, cfg in hosts.items()
        }

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
    ) -> CommandResult:
        state = self._state(host)
        wrapped = wrap_for_exec(rendered, timeout=timeout)
        if (
            self.fast_path
            and not destructive
            and timeout <= FAST_PATH_MAX_TIMEOUT
            and state.shell_failures < SHELL_FAILURES_BEFORE_OFF
        ):
            fast = await self._run_on_shell(
                state, wrapped, rendered, command_name, timeout, max_output
            )
            if fast is not None:
                return fast
        await state.slots.acquire()
        try:
            started = time.monotonic()
            chan, session = await self._open_session(state, wrapped, command_name, max_output)
            client_killed = False
            try:
                try:
                    await asyncio.wait_for(session.done.wait(), timeout + CLIENT_GRACE_SECONDS)
                except TimeoutError:
                    client_killed = True
                    with suppress(Exception):
                        chan.send_signal("KILL")
            finally:
                # Also runs when our caller is cancelled: never leave a channel open.
                chan.close()
            if client_killed:
                with suppress(TimeoutError):
                    await asyncio.wait_for(chan.wait_closed(), CLIENT_GRACE_SECONDS)
            elapsed = time.monotonic() - started
        finally:
            state.slots.release()
        return self._result(
            state, command_name, rendered, session, max_output, timeout, elapsed, client_killed
        )

    async def connection_status(self) -> dict[str, dict[str, Any]]:
        return {
            name: {
                "address": state.config.address,
                "port": state.config.port,
                "user": state.config.user,
                "connected": state.live() is not None,
                "last_error": state.last_error,
                "shell_ok": state.shell_ok,
            }
            for name, state in self._hosts.items()
        }

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
                await self._probe(state, conn)
        finally:
            state.slots.release()
        return (time.monotonic() - started) * 1000

    async def close(self) -> None:
        conns = [s.conn for s in self._hosts.values() if s.conn is not None]
        for state in self._hosts.values():
            state.conn = None
            state.slots.close_idle()
        for conn in conns:
            conn.close()
        for conn in conns:
            with suppress(Exception):
                await asyncio.wait_for(conn.wait_closed(), 5)

    # -- connections ----------------------------------------------------------

    def _state(self, host: str) -> _HostState:
        try:
            return self._hosts[host]
        except KeyError:
            known = ", ".join(sorted(self._hosts)) or "none"
            raise SSHError(host, f"unknown host {host!r}; configured hosts: {known}") from None

    async def _connection(self, state: _HostState) -> asyncssh.SSHClientConnection:
        conn = state.live()
        if conn is not None:
            return conn
        attempts_seen = state.attempts
        async with state.lock:  # two callers must not open two connections
            conn = state.live()
            if conn is not None:
                return conn
            if state.attempts != attempts_seen and state.last_failure is not None:
                # An attempt failed while we queued for the lock: share its answer
                # instead of making every waiting caller sit through connect_timeout.
                raise state.last_failure
            state.conn = None
            state.attempts += 1
            try:
                conn = await self._connect(state.config)
                await self._probe(state, conn)
            except SSHError as exc:
                state.last_error, state.last_failure = str(exc), exc
                raise
            state.conn, state.last_error, state.last_failure = conn, None, None
            return conn

    async def _connect(self, host: HostConfig) -> asyncssh.SSHClientConnection:
        keys = _load_client_keys(host)
        sock = await open_socket(host, self._connector, self._connect_timeout)
        log.info("connecting to %s (%s)", host.name, host.target)
        try:
            return await asyncssh.connect(
                host.address,  # also the name looked up in known_hosts
                host.port,
                sock=sock,
                username=host.user,
                known_hosts=known_hosts_matcher(host),
                client_keys=keys,
                password=None,
                agent_path=None,
                preferred_auth="publickey",
                kbdint_auth=False,
                config=None,  # ~/.ssh/config must not silently change user, port or keys
                connect_timeout=self._connect_timeout,
                encryption_algs=ENCRYPTION_ALGS,
                keepalive_interval=30,
                keepalive_count_max=3,
            )
        except asyncssh.HostKeyNotVerifiable:
            raise await self._host_key_error(host) from None
        except asyncssh.PermissionDenied:
            raise AuthenticationFailed(host.name, _auth_failed(host)) from None
        except (OSError, TimeoutError, asyncssh.Error) as exc:
            if sock is not None:
                sock.close()
            # A connection that opened and then broke may be a host-key type mismatch.
            if not isinstance(exc, TimeoutError | ConnectionRefusedError | socket.gaierror):
                changed = await self._changed_key_type(host)
                if changed is not None:
                    raise changed from None
            raise HostUnreachable(host.name, _unreachable(host, exc)) from None

    async def _presented_key(self, host: HostConfig) -> asyncssh.SSHKey | None:
        """The server's key, fetched over a second connection (for messages only)."""
        try:
            return await fetch_host_key(
                host, connector=self._connector, timeout=self._connect_timeout
            )
        except SSHError:
            return None

    async def _host_key_error(
        self, host: HostConfig, key: asyncssh.SSHKey | None = None
    ) -> SSHError:
        changed = bool(trusted_keys(host))
        if key is None:
            key = await self._presented_key(host)
        shown = fingerprint(key) if key is not None else None
        where = f"{host.name} ({host.address}:{host.port})"
        advice = f"run `tailnet-agent trust {host.name}` to review and pin it"
        if changed:
            return HostKeyChanged(
                host.name,
                f"the SSH host key of {where} has CHANGED: it now presents {shown or 'a new key'}"
                f", which does not match {host.known_hosts}. This can mean a reinstalled "
                f"server or an attack; if you expected it, {advice}",
                shown,
            )
        return HostKeyUnknown(
            host.name,
            f"the SSH host key of {where} is not in {host.known_hosts} "
            f"(it presents {shown or 'an unknown key'}); {advice}",
            shown,
        )

    async def _changed_key_type(self, host: HostConfig) -> SSHError | None:
        """A HostKeyChanged when a handshake failed because the server's key type changed.

        With keys pinned, asyncssh offers only their algorithms; a server that now
        has only another key type drops the handshake, which looks like a network
        failure unless we look at the key it presents.
        """
        if not trusted_keys(host):
            return None
        key = await self._presented_key(host)
        if key is None or is_trusted(host, key) is not False:
            return None
        return await self._host_key_error(host, key)

    async def _probe(self, state: _HostState, conn: asyncssh.SSHClientConnection) -> None:
        host = state.config
        try:
            done = await conn.run(SHELL_PROBE, check=False, timeout=PROBE_TIMEOUT_SECONDS)
        except (OSError, asyncssh.Error, asyncssh.ProcessError, asyncssh.TimeoutError) as exc:
            conn.close()
            raise HostUnreachable(
                host.name,
                f"connected to {host.name} ({host.target}) but could not run the shell probe: "
                f"{exc}; check sshd's logs on that host",
            ) from None
        out = done.stdout if isinstance(done.stdout, str) else ""
        if "posix-ok" not in out:
            state.shell_ok = False
            conn.close()
            raise ShellNotPosix(
                host.name,
                f"the login shell of {host.user} on {host.name} is not a POSIX shell "
                f"(probe exit status {done.exit_status}); commands are sent for /bin/sh. "
                f"Give that account a POSIX login shell (chsh -s /bin/sh {host.user}) "
                "or configure another user",
            )
        if "timeout-ok" not in out:
            state.shell_ok = False
            conn.close()
            raise SSHError(
                host.name,
                f"`timeout` (GNU coreutils or busybox) is not on the PATH of {host.user} on "
                f"{host.name}; it is needed to stop runaway commands: install coreutils there",
            )
        state.shell_ok = True

    # -- commands -----------------------------------------------------------

    async def _run_on_shell(
        self,
        state: _HostState,
        wrapped: str,
        rendered: str,
        command_name: str,
        timeout: float,  # noqa: ASYNC109
        max_output: int,
    ) -> CommandResult | None:
        """Run on a persistent shell; None when no shell could take it and nothing ran."""
        conn = await self._connection(state)  # connection errors are the same on both paths
        shell = await state.slots.take_shell(lambda s: s.usable(conn))
        if shell is None:
            shell = await self._new_shell(state, conn)
            if shell is None:
                return None
        started = time.monotonic()
        call = shell.start(wrapped, max_output, min(max_output, STDERR_CAP))
        client_killed = False
        keep = False
        try:
            try:
                await asyncio.wait_for(call.done.wait(), timeout + CLIENT_GRACE_SECONDS)
            except TimeoutError:
                client_killed = True
            # A command the remote `timeout` stopped leaves a shell we no longer trust.
            keep = call.clean and call.exit_status not in (124, 137)
        finally:
            # Also runs when our caller is cancelled: a half-read frame is never reused.
            if keep:
                state.slots.give_back(shell)
            else:
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
        return self._result(
            state, command_name, rendered, call, max_output, timeout, elapsed, client_killed
        )

    async def _new_shell(
        self, state: _HostState, conn: asyncssh.SSHClientConnection
    ) -> Shell | None:
        """Open a shell in the slot the caller holds; on failure give the slot back."""
        try:
            shell = await open_shell(conn, SHELL_OPEN_TIMEOUT_SECONDS)
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

    async def _open_session(
        self, state: _HostState, wrapped: str, command_name: str, max_output: int
    ) -> tuple[asyncssh.SSHClientChannel[bytes], _CappedSession]:
        host = state.config
        reconnected = False
        refusals = 0
        while True:
            conn = await self._connection(state)
            opened = False

            def factory() -> _CappedSession:
                # asyncssh calls this once the channel is open, just before the exec request.
                nonlocal opened
                opened = True
                return _CappedSession(max_output, min(max_output, STDERR_CAP))

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
                    raise SSHError(
                        host.name,
                        f"the connection to {host.name} dropped while starting {command_name!r}; "
                        "it may or may not have run. Check the host, then run it again",
                    ) from None
                raise SSHError(
                    host.name,
                    f"{host.name} refused to start {command_name!r}: {exc}; check sshd's "
                    "MaxSessions there (it must exceed TAILNET_AGENT_MAX_SESSIONS)",
                ) from None
            chan.write_eof()
            assert isinstance(session, _CappedSession)
            return chan, session

    def _result(
        self,
        state: _HostState,
        command_name: str,
        rendered: str,
        session: _CappedSession | ShellCall,
        max_output: int,
        timeout: float,
        elapsed: float,
        client_killed: bool,
    ) -> CommandResult:
        stdout, stderr = session.text(stderr=False), session.text(stderr=True)
        truncated = False
        if session.overflow[None]:
            truncated = True
            stdout += f"\n[output truncated at {max_output} bytes]\n"
        if session.overflow[asyncssh.EXTENDED_DATA_STDERR]:
            truncated = True
            stderr += f"\n[output truncated at {min(max_output, STDERR_CAP)} bytes]\n"
        status = session.exit_status
        # `timeout` exits 124 after TERM and 137 when it had to KILL; a command that
        # returns 124 by itself early is not a timeout, hence the elapsed-time check.
        timed_out = client_killed or (status in (124, 137) and elapsed >= timeout - 0.5)
        if timed_out:
            stderr += f"\n[killed: command timed out after {timeout:g} s]\n"
        elif session.exit_signal and not truncated:
            stderr += f"\n[terminated by signal {session.exit_signal}]\n"
        elif status is None and session.lost is not None and not truncated:
            stderr += (
                f"\n[connection to {state.config.name} lost before the command finished: "
                f"{session.lost}; it may have partly run]\n"
            )
        return CommandResult(
            host=state.config.name,
            command=command_name,
            rendered=rendered,
            stdout=stdout,
            stderr=stderr,
            exit_status=None if client_killed else status,
            duration_ms=elapsed * 1000,
            truncated=truncated,
            timed_out=timed_out,
        )


def _load_client_keys(host: HostConfig) -> list[asyncssh.SSHKey]:
    paths = host.client_key_paths()
    if not paths:
        raise AuthenticationFailed(
            host.name,
            f"no SSH key for {host.name}: ~/.ssh/id_ed25519 and ~/.ssh/id_rsa do not exist; "
            "set REMOTE_SSH_KEY_PATH or `key:` in the inventory",
        )
    keys = []
    for path in paths:
        try:
            keys.append(asyncssh.read_private_key(path, host.key_passphrase))
        except OSError as exc:
            raise AuthenticationFailed(
                host.name, f"cannot read SSH key {path} for {host.name}: {exc.strerror}"
            ) from None
        except asyncssh.KeyEncryptionError as exc:
            if "bcrypt" in str(exc):
                # Encrypted OpenSSH-format keys (ssh-keygen's default) need bcrypt's KDF.
                hint = "decrypting it needs the `bcrypt` package (pip install bcrypt)"
            elif host.key_passphrase:
                hint = "the passphrase is wrong (REMOTE_SSH_KEY_PASSPHRASE)"
            else:
                hint = "it needs a passphrase (set REMOTE_SSH_KEY_PASSPHRASE)"
            raise AuthenticationFailed(
                host.name, f"cannot load SSH key {path} for {host.name}: {hint}"
            ) from None
        except asyncssh.KeyImportError:
            hint = (
                "the passphrase is wrong (REMOTE_SSH_KEY_PASSPHRASE)"
                if host.key_passphrase
                else "it may need a passphrase (set REMOTE_SSH_KEY_PASSPHRASE)"
            )
            raise AuthenticationFailed(
                host.name, f"cannot load SSH key {path} for {host.name}: {hint}"
            ) from None
    return keys


def _auth_failed(host: HostConfig) -> str:
    keys = ", ".join(str(p) for p in host.client_key_paths())
    return (
        f"{host.user}@{host.address}:{host.port} ({host.name}) refused key {keys}: check the "
        f"user name, and that the matching public key is in ~{host.user}/.ssh/authorized_keys "
        "on that host"
    )
