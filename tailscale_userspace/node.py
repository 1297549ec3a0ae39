"""A tailnet node backed by a tailscaled child in userspace-networking mode.

Joining follows `tailscale up`: watch the IPN bus, POST start (prefs + auth key),
then, when the backend says NeedsLogin, POST login-interactive, which uses the
auth key or produces a login URL; then wait on the bus until Running.

Ephemeral nodes (no state_dir) keep their state in the private runtime
directory for the life of this object rather than in memory (`--state=mem:`):
a tailscaled restarted after a crash then comes back as the *same* node (same
IP and MagicDNS name), where an in-memory node would register anew (new IP, a
`<hostname>-1` name, the dead node lingering). The price is that tailscaled no
longer flags the registration as ephemeral; that comes from the auth key
(headscale `preauthkeys create --ephemeral`, Tailscale "ephemeral" keys), and
stop() logs the node out itself (an ephemeral node is then deleted) and
removes the state.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import tempfile
import time
from collections.abc import AsyncGenerator, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from .errors import LocalAPIError, TailscaleError
from .localapi import NOTIFY_INITIAL_STATE, LocalAPI
from .process import TailscaledProcess, tailscaled_argv

log = logging.getLogger(__name__)

_BACKOFF_START = 1.0
_BACKOFF_MAX = 30.0
_STABLE_AFTER = 60.0  # a run this long resets the restart backoff
_SPAWN_TIMEOUT = 30.0
# ipn.State as the IPN bus sends it (tailscale.com/ipn/backend.go).
_STATES = ("NoState", "InUseOtherUser", "NeedsLogin", "NeedsMachineAuth", "Stopped",
           "Starting", "Running")


@dataclass(frozen=True)
class NodeOptions:
    tailscaled: Path
    state_dir: Path | None = None  # None: ephemeral, state only while this node object lives
    auth_key: str | None = field(default=None, repr=False)
    hostname: str | None = None
    control_url: str | None = None
    extra_env: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    runtime_dir: Path | None = None  # holds the LocalAPI socket; private temp dir if None


@dataclass(frozen=True)
class NodeInfo:
    state: str
    ips: tuple[str, ...]  # IPv4 first
    dns_name: str  # MagicDNS FQDN without the trailing dot, "" if none
    hostname: str

    @classmethod
    def from_status(cls, status: Mapping[str, Any]) -> NodeInfo:
        me: Mapping[str, Any] = status.get("Self") or {}
        ips = tuple(str(ip) for ip in status.get("TailscaleIPs") or me.get("TailscaleIPs") or ())
        return cls(
            state=str(status.get("BackendState") or ""),
            ips=tuple(sorted(ips, key=lambda ip: ":" in ip)),
            dns_name=str(me.get("DNSName") or "").rstrip("."),
            hostname=str(me.get("HostName") or ""),
        )


def _private_dir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    # The state holds the node's private keys; the socket grants control of the node.
    os.chmod(path, 0o700)
    return path


class TailscaleNode:
    def __init__(
        self,
        options: NodeOptions,
        *,
        on_progress: Callable[[str], None] | None = None,
        on_login_url: Callable[[str], None] | None = None,
    ) -> None:
        self.options = options
        self._on_progress = on_progress
        self._on_login_url = on_login_url
        self._process: TailscaledProcess | None = None
        self._localapi: LocalAPI | None = None
        self._socks5: tuple[str, int] | None = None
        self._info: NodeInfo | None = None
        self._restarts = 0
        self._stopping = False
        self._runtime_dir: Path | None = None
        self._owns_runtime_dir = False

    # -- properties -------------------------------------------------------------

    @property
    def socks5(self) -> tuple[str, int]:
        if self._socks5 is None:
            raise TailscaleError("the tailscale node is not started; call start() or up() first")
        return self._socks5

    @property
    def localapi(self) -> LocalAPI:
        if self._localapi is None:
            raise TailscaleError("the tailscale node is not started; call start() or up() first")
        return self._localapi

    @property
    def info(self) -> NodeInfo | None:
        return self._info

    @property
    def pid(self) -> int | None:
        if self._process is None or self._process.returncode is not None:
            return None
        return self._process.pid

    @property
    def ephemeral(self) -> bool:
        return self.options.state_dir is None

    # -- lifecycle --------------------------------------------------------------

    def _progress(self, message: str) -> None:
        log.info("%s", message)
        if self._on_progress is not None:
            self._on_progress(message)

    def _ensure_dirs(self) -> tuple[Path, Path]:
        if self._runtime_dir is None:
            if self.options.runtime_dir is not None:
                self._runtime_dir = _private_dir(Path(self.options.runtime_dir))
            else:
                # Short path: a unix socket path must fit in 108 bytes.
                self._runtime_dir = Path(tempfile.mkdtemp(prefix="tsu-"))
                self._owns_runtime_dir = True
        if self.options.state_dir is not None:
            var_dir = _private_dir(Path(self.options.state_dir))
        else:
            var_dir = _private_dir(self._runtime_dir / "var")
        return self._runtime_dir, var_dir

    async def start(self) -> None:
        """Spawn tailscaled and wait until its SOCKS5 proxy and LocalAPI answer."""
        self._stopping = False
        await self._spawn()

    async def _spawn(self) -> None:
        if self._process is not None and self._process.returncode is None:
            return
        runtime_dir, var_dir = self._ensure_dirs()
        socket_path = runtime_dir / "tailscaled.sock"
        with contextlib.suppress(FileNotFoundError):
            socket_path.unlink()  # a stale socket from a killed run
        argv = tailscaled_argv(self.options.tailscaled, socket_path=socket_path, var_dir=var_dir)
        self._progress("tailscale: starting tailscaled (userspace networking)")
        process = await TailscaledProcess.spawn(argv, self.options.extra_env, var_dir=var_dir)
        self._process = process
        try:
            self._socks5 = await process.socks5(_SPAWN_TIMEOUT)
            # One client for the node's whole life: callers keep a reference to it (an
            # identity resolver, say) and the socket path survives restarts.
            if self._localapi is None:
                self._localapi = LocalAPI(socket_path)
            await self._wait_localapi(process)
            if self._stopping:  # stop() ran while a supervised restart was spawning
                raise TailscaleError("the tailscale node was stopped while tailscaled started")
        except BaseException:
            await process.terminate(5.0)
            raise
        self._progress(
            f"tailscale: tailscaled running (pid {process.pid}), SOCKS5 proxy on "
            f"{self._socks5[0]}:{self._socks5[1]}"
        )

    async def _wait_localapi(self, process: TailscaledProcess) -> None:
        deadline = time.monotonic() + _SPAWN_TIMEOUT
        while True:
            try:
                await self.localapi.status()
                return
            except LocalAPIError as exc:
                if process.returncode is not None:
                    raise TailscaleError(
                        f"tailscaled exited with code {process.returncode} while starting; "
                        "run with -v to see its log",
                        details=process.log_tail(),
                    ) from None
                if time.monotonic() > deadline:
                    raise TailscaleError(
                        f"tailscaled's LocalAPI did not answer within {_SPAWN_TIMEOUT:g}s "
                        f"({exc}); run with -v to see its log",
                        details=process.log_tail(),
                    ) from None
            await asyncio.sleep(0.05)

    async def up(self, *, timeout: float | None = 60.0) -> NodeInfo:  # noqa: ASYNC109 (API)
        """Start tailscaled if needed and join the tailnet; returns once Running."""
        await self.start()
        return await self._join(timeout)

    async def _rejoin(self) -> NodeInfo:
        await self._spawn()
        return await self._join(60.0)

    async def _join(self, within: float | None) -> NodeInfo:
        process = self._process
        assert process is not None
        info = NodeInfo.from_status(await self.localapi.status())
        if info.state == "Running" and info.ips:
            # Already joined (up() called twice, or saved state): Start would reset the
            # control client and make the node rejoin for nothing.
            self._info = info
            return info
        try:
            async with asyncio.timeout(within):
                return await self._join_on_bus(process)
        except TimeoutError:
            status = await self.localapi.status()
            raise TailscaleError(self._join_timeout_message(within, status),
                                 details=process.log_tail()) from None

    async def _join_on_bus(self, process: TailscaledProcess) -> NodeInfo:
        """Start the backend and follow its state changes on the IPN bus until Running."""
        opts = self.options
        bus = self.localapi.watch_ipn_bus(NOTIFY_INITIAL_STATE)
        died = asyncio.ensure_future(process.wait())
        try:
            # The first message is the current state: from here on no change is missed.
            await self._next_notify(bus, died, process)
            await self.localapi.start(
                auth_key=opts.auth_key, control_url=opts.control_url, hostname=opts.hostname
            )
            # The state right after Start, in case Start left it unchanged (no message).
            status = await self.localapi.status()
            notify: dict[str, Any] = {"BrowseToURL": status.get("AuthURL") or ""}
            if status.get("BackendState") in _STATES:
                notify["State"] = _STATES.index(str(status["BackendState"]))
            last_state = ""
            reported_url = ""
            login_requested = False
            while True:
                url = str(notify.get("BrowseToURL") or "")
                if url and url != reported_url:
                    reported_url = url
                    self._progress(f"tailscale: to join the tailnet, open {url}")
                    if self._on_login_url is not None:
                        self._on_login_url(url)
                state_index = notify.get("State")
                if isinstance(state_index, int) and 0 <= state_index < len(_STATES):
                    state = _STATES[state_index]
                    if state != last_state:
                        last_state = state
                        self._progress(f"tailscale: {state}")
                    if state == "NeedsLogin" and not login_requested:
                        # Start() alone does not log in a node without a node key: like
                        # `tailscale up`, ask for a login, which uses the auth key if one
                        # was given and otherwise produces a login URL.
                        login_requested = True
                        await self.localapi.login_interactive()
                if last_state == "Running":
                    info = NodeInfo.from_status(await self.localapi.status())
                    self._info = info
                    if info.ips:
                        self._progress(f"tailscale: joined as {info.dns_name or info.hostname} "
                                       f"({', '.join(info.ips)})")
                        return info
                notify = await self._next_notify(bus, died, process)
        finally:
            died.cancel()
            await bus.aclose()

    async def _next_notify(
        self,
        bus: AsyncGenerator[dict[str, Any], None],
        died: asyncio.Future[int],
        process: TailscaledProcess,
    ) -> dict[str, Any]:
        """The next IPN bus message; a TailscaleError if tailscaled exits first."""
        message: asyncio.Future[dict[str, Any]] = asyncio.ensure_future(anext(bus))
        try:
            pending: list[asyncio.Future[Any]] = [message, died]
            await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
        finally:
            if not message.done():
                message.cancel()
                with contextlib.suppress(BaseException):
                    await message
        if message.done() and not message.cancelled():
            try:
                return message.result()
            except StopAsyncIteration:
                raise TailscaleError(
                    "tailscaled closed its IPN bus while joining the tailnet; run with -v to "
                    "see its log",
                    details=process.log_tail(),
                ) from None
        raise TailscaleError(
            f"tailscaled exited with code {process.returncode} while joining the "
            "tailnet; run with -v to see its log",
            details=process.log_tail(),
        )

    def _join_timeout_message(self, timeout: float | None, status: Mapping[str, Any]) -> str:
        health = "; ".join(str(h) for h in status.get("Health") or ()) or "none reported"
        hint = (
            "check the control URL (TS_CONTROL_URL / --control-url) and that the auth key is "
            "valid and unexpired (a reusable key if several nodes or restarts share it)"
            if self.options.auth_key
            else "open the login URL and approve the node"
        )
        return (
            f"tailscale node did not reach Running within {timeout:g}s (state "
            f"{status.get('BackendState')!r}, control {self.options.control_url or 'default'}, "
            f"health: {health}); {hint}. Run with -v to see tailscaled's log"
        )

    async def run_supervised(self) -> None:
        """Keep tailscaled alive: restart it with backoff and rejoin when it dies."""
        backoff = _BACKOFF_START
        while not self._stopping:
            process = self._process
            if process is None:
                return
            started = time.monotonic()
            code: int | None = await process.wait()
            if self._stopping:
                return
            if time.monotonic() - started > _STABLE_AFTER:
                backoff = _BACKOFF_START
            while not self._stopping:
                self._progress(
                    f"tailscale: tailscaled exited unexpectedly (code {code}); "
                    f"restarting in {backoff:g}s"
                )
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, _BACKOFF_MAX)
                if self._stopping:
                    return
                self._restarts += 1
                try:
                    await self._rejoin()
                    break
                except TailscaleError as exc:
                    log.warning("restarting tailscaled failed: %s", exc)
                    if self._process is not None and self._process.returncode is None:
                        await self._process.terminate(5.0)
                    code = self._process.returncode if self._process else None

    async def health(self) -> dict[str, Any]:
        """Live state from tailscaled; addresses are the last known ones.

        The state is never taken from the cache: while tailscaled is down or still
        starting it reads "Stopped" or "NoState", not the "Running" of a dead process.
        """
        running = self.pid is not None
        state = "NoState" if running else "Stopped"
        info = self._info
        if running:
            try:
                info = NodeInfo.from_status(await self.localapi.status())
            except TailscaleError:
                pass  # starting: its LocalAPI socket is not there yet
            else:
                self._info = info
                state = info.state
        return {
            "state": state,
            "ips": list(info.ips) if info else [],
            "dns_name": info.dns_name if info else "",
            "restarts": self._restarts,
            "running": running,
        }

    async def stop(self, timeout: float = 10.0) -> None:  # noqa: ASYNC109 (API)
        """Stop tailscaled (an ephemeral node logs out first); safe to call twice."""
        self._stopping = True
        process = self._process
        if process is not None and process.returncode is None:
            self._progress("tailscale: stopping tailscaled")
            if self.ephemeral and self._info is not None and self._localapi is not None:
                await self._logout(min(timeout, 5.0))
            code = await process.terminate(timeout)
            log.debug("tailscaled (pid %d) exited with code %s", process.pid, code)
        elif process is not None:
            await process.wait()
        if self._localapi is not None:
            await self._localapi.aclose()
            self._localapi = None
        if self._runtime_dir is not None:
            if self._owns_runtime_dir:
                shutil.rmtree(self._runtime_dir, ignore_errors=True)
            elif self.ephemeral:
                shutil.rmtree(self._runtime_dir / "var", ignore_errors=True)
            self._runtime_dir = None
            self._owns_runtime_dir = False

    async def _logout(self, within: float) -> None:
        """Log the node out so control forgets it now, not after an inactivity timeout."""
        try:
            async with asyncio.timeout(within):
                await self.localapi.logout()
        except (TimeoutError, TailscaleError) as exc:
            log.warning(
                "logging out the ephemeral tailscale node failed (%s); control will remove "
                "it after its inactivity timeout",
                exc,
            )
