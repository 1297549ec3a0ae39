"""One tailscaled child process: command line, environment, log reader, shutdown.

Lifetime: tailscaled must never outlive us. Three layers make sure of it:
`terminate()` (SIGTERM, then SIGKILL after a timeout); an atexit hook that does
the same for children still alive when the interpreter exits; and, for the case
where we are SIGKILLed and no Python code runs, tailscaled's own
`TS_PARENT_DEATH_FD` knob: it reads from an inherited pipe and exits when the
read returns, i.e. when the kernel closes our write end as we die. This works
without `preexec_fn` (unsafe with threads) and is portable to macOS, unlike
PR_SET_PDEATHSIG.
"""

from __future__ import annotations

import asyncio
import atexit
import collections
import contextlib
import logging
import os
import re
import signal
import time
from collections.abc import Mapping
from pathlib import Path

from .errors import TailscaleError

log_tailscaled = logging.getLogger("tailscale_userspace.tailscaled")

# tailscale.com/cmd/tailscaled/proxy.go logs this when --socks5-server ends in ":0".
_SOCKS5_LINE = re.compile(r"SOCKS5 listening on (?P<host>[0-9.]+|\[[0-9a-fA-F:]+\]):(?P<port>\d+)")

# Environment variables that would change how tailscaled listens.
_SCRUBBED_ENV = ("PORT",)

_LIVE: dict[int, TailscaledProcess] = {}


def tailscaled_argv(tailscaled: Path, *, socket_path: Path, var_dir: Path) -> list[str]:
    return [
        str(tailscaled),
        "--tun=userspace-networking",
        "--socks5-server=127.0.0.1:0",
        f"--socket={socket_path}",
        # State (node key), certificates, Taildrop files: <var_dir>/tailscaled.state etc.
        f"--statedir={var_dir}",
        "--port=0",
        "--no-logs-no-support",
    ]


def tailscaled_env(
    extra_env: Mapping[str, str], *, var_dir: Path, death_fd: int | None
) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _SCRUBBED_ENV}
    # Without it, logpolicy writes tailscaled.log.conf into /var/lib/tailscale (as root)
    # or the user's cache dir, even with --no-logs-no-support.
    env["TS_LOGS_DIR"] = str(var_dir)
    env.update(extra_env)
    if death_fd is not None:
        env["TS_PARENT_DEATH_FD"] = str(death_fd)
    return env


class TailscaledProcess:
    """A spawned tailscaled; use `spawn()`."""

    def __init__(self, process: asyncio.subprocess.Process, death_write_fd: int) -> None:
        self._process = process
        self._death_write_fd: int | None = death_write_fd
        self._socks5: asyncio.Future[tuple[str, int]] = asyncio.get_running_loop().create_future()
        self.recent_lines: collections.deque[str] = collections.deque(maxlen=40)
        self._reader = asyncio.create_task(self._read_log(), name=f"tailscaled-log-{self.pid}")
        _LIVE[self.pid] = self

    @classmethod
    async def spawn(
        cls,
        argv: list[str],
        extra_env: Mapping[str, str],
        *,
        var_dir: Path,
    ) -> TailscaledProcess:
        death_read, death_write = os.pipe()
        try:
            process = await asyncio.create_subprocess_exec(
                *argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
                env=tailscaled_env(extra_env, var_dir=var_dir, death_fd=death_read),
                pass_fds=(death_read,),
                start_new_session=True,  # a Ctrl-C on our terminal is ours to handle
                limit=1 << 20,  # netmap dumps make long log lines
            )
        except OSError as exc:
            os.close(death_write)
            raise TailscaleError(
                f"cannot start tailscaled {argv[0]!r}: {exc}; check that it is an executable "
                "for this platform (pass --tailscaled PATH)"
            ) from exc
        finally:
            os.close(death_read)
        return cls(process, death_write)

    @property
    def pid(self) -> int:
        return self._process.pid

    @property
    def returncode(self) -> int | None:
        return self._process.returncode

    def log_tail(self) -> str:
        return "\n".join(self.recent_lines)

    async def _read_log(self) -> None:
        stream = self._process.stdout
        assert stream is not None
        while True:
            try:
                raw = await stream.readline()
            except ValueError:  # a line longer than the limit: drop what is buffered
                raw = await stream.read(1 << 20)
            if not raw:
                break
            line = raw.decode(errors="replace").rstrip()
            self.recent_lines.append(line)
            log_tailscaled.debug("[%d] %s", self.pid, line)
            if not self._socks5.done():
                match = _SOCKS5_LINE.search(line)
                if match:
                    host = match["host"].strip("[]")
                    self._socks5.set_result((host, int(match["port"])))
        if not self._socks5.done():
            code = await self._process.wait()
            self._socks5.set_exception(
                TailscaleError(
                    f"tailscaled (pid {self.pid}) exited with code {code} before opening its "
                    "SOCKS5 proxy; run with -v to see its log, or check that it is a tailscaled "
                    "for this platform",
                    details=self.log_tail(),
                )
            )

    async def socks5(self, within: float) -> tuple[str, int]:
        try:
            return await asyncio.wait_for(asyncio.shield(self._socks5), within)
        except TimeoutError:
            raise TailscaleError(
                f"tailscaled (pid {self.pid}) did not report its SOCKS5 port within "
                f"{within:g}s; run with -v to see its log",
                details=self.log_tail(),
            ) from None

    async def wait(self) -> int:
        code = await self._process.wait()
        # Let the reader drain the last lines (they explain the exit).
        with contextlib.suppress(Exception):
            await asyncio.wait_for(asyncio.shield(self._reader), 2.0)
        self._release()
        return code

    async def terminate(self, grace: float) -> int:
        """SIGTERM, then SIGKILL after `grace` seconds."""
        if self._process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self._process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self._process.wait(), grace)
            except TimeoutError:
                log_tailscaled.warning(
                    "tailscaled (pid %d) ignored SIGTERM for %gs; killing it", self.pid, grace
                )
                with contextlib.suppress(ProcessLookupError):
                    self._process.kill()
        return await self.wait()

    def _release(self) -> None:
        _LIVE.pop(self.pid, None)
        if self._death_write_fd is not None:
            os.close(self._death_write_fd)
            self._death_write_fd = None
        if not self._socks5.done():
            self._socks5.cancel()


def _kill_leftovers() -> None:
    """At interpreter exit: stop every tailscaled we still own, politely then firmly."""
    pids = list(_LIVE)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 6.0  # a clean tailscaled shutdown takes well under that
    remaining = set(pids)
    while remaining and time.monotonic() < deadline:
        for pid in list(remaining):
            try:
                done, _ = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                done = pid  # already reaped by someone else
            if done:
                remaining.discard(pid)
        if remaining:
            time.sleep(0.05)
    for pid in remaining:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


atexit.register(_kill_leftovers)
