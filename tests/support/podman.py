"""Podman for the container tests: a private store, the settings this machine needs, and a
network namespace the test owns for each container.

- Store and configuration are private to the test run (`--root`, `--runroot`,
  `--tmpdir` under one temporary directory; `CONTAINERS_CONF` pointing at our own
  file), so nothing touches the machine's podman state and nothing is left behind.
- What these machines need (DESIGN.md, "Containers on these machines"): the `vfs`
  storage driver, `runc` (crun fails on this kernel's hybrid cgroups), the `cgroupfs`
  cgroup manager, and `default_ulimits = []` (setting RLIMIT_NPROC is refused). No
  systemd: podman cannot arm its healthcheck timer (it logs that), so the tests run
  the image's health check themselves (`podman healthcheck run`), as the timer would.
- The network: the tests run in a loopback-only namespace where headscale listens on
  127.0.0.1. A container gets a namespace of its own (`ContainerNetwork`: created by a
  holder process, only `lo` in it, joined with `--network ns:/proc/<pid>/ns/net`);
  the only thing it can reach outside is the control server, forwarded from 127.0.0.1
  inside it to headscale's 127.0.0.1 outside (`PortForward`). Everything else the
  agent does (joining, DERP relay, SSH to hosts, serving peers) goes through that one
  port, so the test proves the image needs nothing but outbound access to control.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import shutil
import socket
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tests.support.waiting import wait_until_sync

from .components import missing, require_executable

REPO = Path(__file__).resolve().parents[2]
CONTAINERS_CONF = """\
[containers]
# Setting RLIMIT_NPROC is refused on these machines; keep the host's limits.
default_ulimits = []
"""
_CLONE_NEWNET = 0x40000000


class PodmanError(RuntimeError):
    pass


class Podman:
    """The podman command line on a private store."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self.binary = require_executable(
            "podman", "install podman and runc (Debian: apt-get install podman runc; "
            "`sh tests/setup-machine.sh` does it as root)")
        require_executable("runc", "install runc (apt-get install runc)", "/usr/sbin/runc")
        if os.geteuid() != 0:
            missing("root for podman", "the container tests run rootful podman (as CI does)")
        (home / "containers.conf").write_text(CONTAINERS_CONF)
        self.env = {**os.environ, "CONTAINERS_CONF": str(home / "containers.conf")}

    def argv(self, *args: str) -> list[str]:
        return [
            self.binary,
            "--root", str(self.home / "storage"),
            "--runroot", str(self.home / "run"),
            "--tmpdir", str(self.home / "libpod"),
            "--storage-driver", "vfs",
            "--runtime", "runc",
            "--cgroup-manager", "cgroupfs",
            "--events-backend", "none",
            *args,
        ]

    @property
    def engine_args(self) -> str:
        """The global options, for build/image.sh's ENGINE_ARGS."""
        return " ".join(self.argv()[1:])

    def run(self, *args: str, check: bool = True, timeout: float = 120,
            input_text: str | None = None) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(self.argv(*args), env=self.env, capture_output=True, text=True,
                              timeout=timeout, check=False, input=input_text)
        if check and done.returncode != 0:
            raise PodmanError(f"podman {' '.join(args)} exited {done.returncode}:\n"
                              f"{done.stderr.strip()[-3000:]}")
        return done

    def inspect(self, name: str, *, kind: str = "container") -> dict[str, Any]:
        data = json.loads(self.run(kind, "inspect", name).stdout)
        return dict(data[0])

    def logs(self, name: str) -> str:
        done = self.run("logs", name, check=False)
        return done.stdout + done.stderr

    def clean(self) -> None:
        """Remove every container, volume and secret, then the store itself."""
        self.run("rm", "--all", "--force", "--time", "5", check=False)
        self.run("volume", "prune", "--force", check=False)
        for name in self.run("secret", "ls", "--format", "{{.Name}}", check=False).stdout.split():
            self.run("secret", "rm", name, check=False)
        self.run("rmi", "--all", "--force", check=False)
        shutil.rmtree(self.home, ignore_errors=True)


@contextlib.contextmanager
def podman_home() -> Iterator[Podman]:
    # Short: podman's runroot holds unix sockets (conmon's), whose paths must fit 108 bytes.
    home = Path(tempfile.mkdtemp(prefix="tnpod-"))
    try:
        podman = Podman(home)
    except BaseException:
        shutil.rmtree(home, ignore_errors=True)
        raise
    try:
        yield podman
    finally:
        podman.clean()


def build_image(podman: Podman, tag: str) -> subprocess.CompletedProcess[str]:
    """build/image.sh with the private store, as `make image` runs it."""
    venv_python = REPO / ".venv" / "bin" / "python"
    env = {**podman.env, "ENGINE": podman.binary, "ENGINE_ARGS": podman.engine_args,
           "IMAGE": tag, "PYTHON": str(venv_python if venv_python.exists() else "python3")}
    return subprocess.run(["sh", str(REPO / "build" / "image.sh")], env=env, cwd=REPO,
                          capture_output=True, text=True, timeout=600, check=False)


# -- the container's network namespace -----------------------------------------------


class ContainerNetwork:
    """A network namespace with only loopback up, held open by a sleeping process."""

    def __init__(self) -> None:
        self.holder = subprocess.Popen(
            ["unshare", "--net", "sh", "-c", "ip link set lo up && exec sleep infinity"],
            stdin=subprocess.DEVNULL)
        self.path = f"/proc/{self.holder.pid}/ns/net"
        holder = self.holder

        def lo_up() -> bool:  # once sh has exec'd sleep
            if holder.poll() is not None:
                raise RuntimeError("could not create a network namespace for the container "
                                   "(unshare --net; needs root)")
            return _comm(holder.pid) == "sleep"

        wait_until_sync(lo_up, 10, "the container's network namespace (unshare --net)")

    @property
    def podman_network(self) -> str:
        return f"ns:{self.path}"

    def close(self) -> None:
        self.holder.kill()
        self.holder.wait()


def _comm(pid: int) -> str:
    with contextlib.suppress(OSError):
        return Path(f"/proc/{pid}/comm").read_text().strip()
    return ""


def listen_in(netns: str, port: int) -> socket.socket:
    """A socket listening on 127.0.0.1:`port` inside the namespace `netns`.

    A socket belongs to the namespace it was created in, whatever thread uses it later;
    a short-lived thread enters the namespace, creates it and ends (setns changes only
    the calling thread).
    """
    made: list[socket.socket] = []
    errors: list[str] = []

    def create() -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        with open(netns, "rb") as ns:
            if libc.setns(ns.fileno(), _CLONE_NEWNET) != 0:
                errors.append(os.strerror(ctypes.get_errno()))
                return
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", port))
        sock.listen(64)
        made.append(sock)

    thread = threading.Thread(target=create)
    thread.start()
    thread.join()
    if not made:
        raise RuntimeError(f"cannot listen inside {netns}: {errors}")
    return made[0]


class PortForward:
    """Connections to 127.0.0.1:port inside a namespace, relayed to 127.0.0.1:port here."""

    def __init__(self, netns: str, port: int) -> None:
        self.port = port
        self.listener = listen_in(netns, port)
        self.connections = 0
        self._open: list[socket.socket] = []
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._closed:
            try:
                inside, _ = self.listener.accept()
            except OSError:
                return
            try:
                outside = socket.create_connection(("127.0.0.1", self.port), timeout=10)
            except OSError:
                inside.close()
                continue
            outside.settimeout(None)
            self.connections += 1
            self._open += [inside, outside]
            for a, b in ((inside, outside), (outside, inside)):
                threading.Thread(target=_pump, args=(a, b), daemon=True).start()

    def close(self) -> None:
        self._closed = True
        self.listener.close()
        for sock in self._open:
            with contextlib.suppress(OSError):
                sock.close()


def _pump(source: socket.socket, sink: socket.socket) -> None:
    try:
        while data := source.recv(65536):
            sink.sendall(data)
    except OSError:
        pass
    finally:
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_WR)

