"""The local operator's socket: the ops app (/healthz, /readyz, /metrics) on a unix socket.

The socket file is mode 0600, so only this user (and root) can connect: the person
who already holds the agent's keys and configuration, as with tailscaled's LocalAPI
socket. It appears at its path only once it has that mode (bound in a private
directory beside it, then renamed), and is removed when the agent stops.
"""

from __future__ import annotations

import contextlib
import errno
import os
import socket
import stat
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

from starlette.types import ASGIApp

from agent.errors import ConfigError

from .server import HTTPServer


def _refuse_if_in_use(path: Path) -> None:
    """A live socket at `path` belongs to another agent; a dead one is left over: remove it."""
    try:
        mode = path.lstat().st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(mode):
        raise ConfigError(f"TAILNET_AGENT_SOCKET={path} exists and is not a socket; choose "
                          "another path (or remove that file)")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(str(path))
    except OSError as exc:
        if exc.errno not in (errno.ECONNREFUSED, errno.ENOENT):
            raise ConfigError(f"cannot use the socket {path}: {exc.strerror}; check the "
                              "path and its permissions") from None
        path.unlink(missing_ok=True)  # nobody listens: left over from a killed agent
        return
    finally:
        probe.close()
    raise ConfigError(f"another agent already serves on the socket {path}; stop it, or "
                      "choose another path with --socket / TAILNET_AGENT_SOCKET")


def bind_unix(path: Path) -> socket.socket:
    """A listening-ready unix socket at `path`, mode 0600 from the moment it appears there."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    _refuse_if_in_use(path)
    private = Path(tempfile.mkdtemp(prefix=".tnagent-", dir=path.parent))
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(str(private / "s"))
        os.chmod(private / "s", 0o600)
        os.rename(private / "s", path)
    except OSError as exc:
        sock.close()
        raise ConfigError(f"cannot listen on the socket {path}: {exc.strerror}; check the "
                          "directory and its permissions, or choose another path with "
                          "--socket / TAILNET_AGENT_SOCKET") from None
    finally:
        with contextlib.suppress(OSError):
            private.rmdir()
    sock.set_inheritable(False)
    return sock


class UnixHTTPServer(HTTPServer):
    """The HTTP server of server.py, listening on a unix socket instead of a port."""

    def __init__(self, app: ASGIApp, *, path: Path) -> None:
        super().__init__(app, port=0)
        self.server.config.lifespan = "off"  # the ops app has nothing to start or stop
        self.path = path

    def _bind(self) -> socket.socket:
        return bind_unix(self.path)


@contextlib.asynccontextmanager
async def serving_on_socket(app: ASGIApp, path: Path | None) -> AsyncIterator[None]:
    """Serve `app` on the unix socket `path` (nothing if None) for the `with` block."""
    if path is None:
        yield
        return
    server = UnixHTTPServer(app, path=path)
    await server.start()
    try:
        yield
    finally:
        server.request_exit()
        with contextlib.suppress(Exception):
            await server.wait()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)  # uvicorn leaves a socket it did not create
