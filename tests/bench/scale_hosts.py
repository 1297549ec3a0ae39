"""N simulated hosts for the scale benchmark: real sshd on distinct loopback addresses.

Inside the benchmark's own network namespace (tests/run-isolated.sh) every address of
127.0.0.0/8 is local, so a few OpenSSH sshd processes listening on 0.0.0.0 answer on
127.0.1.1, 127.0.1.2, ... as distinct hosts. The agent sees them as any user's fleet:
one inventory entry per host (its own name, address and port) and one known_hosts
line per host (the same host key, pinned per address as `tailnet-agent trust` writes
it), in one known_hosts file as a user's ~/.ssh/known_hosts would be.

What makes the hosts differ is what a command sees there: each sshd puts a folder of
ours first on PATH (sshd_config `SetEnv`), whose `hostname` and `df` print the files of
the address the session reached (the server address in $SSH_CONNECTION). So the default
catalog's `hostname` answers each host's own name (N distinct outputs), and its
`disk_usage` (`df -hP`) has 3 distinct outputs: most hosts 41 % full, every fifth 78 %,
one in 50 over 90 % (the issue's "which hosts have a disk over 90 % full?"). Everything
else (the shell, `timeout`, the probe) is the machine's own.

sshd's defaults refuse a fleet's worth of handshakes at once: MaxStartups (10:30:100)
starts dropping unauthenticated connections past 10, so it is raised to `max_startups`
per sshd. MaxSessions is per connection (the agent keeps below it) and stays at 10.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

from agent.hosts.inventory import HostConfig
from tests.support.sshd import Sshd, _descendants

ROLES = (("web", 6), ("app", 3), ("db", 1))  # names in blocks: 60 % web, 30 % app, 10 % db
HOSTS_PER_SUBNET = 250  # 127.0.1.1-250, 127.0.2.1-250, ...
MAX_HOSTS = HOSTS_PER_SUBNET * 250

DF_HEADER = "Filesystem      Size  Used Avail Use% Mounted on\n"
DF_COMMON = (
    "udev            3.9G     0  3.9G   0% /dev\n"
    "tmpfs           796M  1.2M  795M   1% /run\n"
    "{root}"
    "tmpfs           3.9G     0  3.9G   0% /dev/shm\n"
    "tmpfs           5.0M     0  5.0M   0% /run/lock\n"
    "/dev/vda15      124M   12M  113M  10% /boot/efi\n"
)
DF_ROOT = {
    "normal": "/dev/vda1        49G   20G   27G  41% /\n",
    "busy": "/dev/vda1        49G   37G  9.6G  78% /\n",
    "full": "/dev/vda1        49G   45G  2.4G  95% /\n",
}
DISK_CLASSES = tuple(DF_ROOT)


def disk_class(index: int) -> str:
    """3 distinct `df` outputs: one host in 50 over 90 % full, every fifth 78 %."""
    if index % 50 == 7:
        return "full"
    return "busy" if index % 5 == 4 else "normal"


def address(index: int) -> str:
    return f"127.0.{1 + index // HOSTS_PER_SUBNET}.{1 + index % HOSTS_PER_SUBNET}"


def host_names(n: int) -> list[str]:
    """`web-001`... then `app-...`, `db-...`, in blocks like a real fleet's naming."""
    total = sum(share for _, share in ROLES)
    counts = [n * share // total for _, share in ROLES]
    counts[0] += n - sum(counts)
    width = max(3, len(str(max(counts))))
    return [f"{role}-{i:0{width}d}" for (role, _), count in zip(ROLES, counts, strict=True)
            for i in range(1, count + 1)]


@dataclass(frozen=True)
class SimHost:
    index: int
    name: str
    address: str
    port: int
    disk: str  # a DISK_CLASSES value

    @property
    def df(self) -> str:
        return DF_HEADER + DF_COMMON.format(root=DF_ROOT[self.disk])


_WRAPPER = """#!/bin/sh
# The scale benchmark's `{program}`: what the simulated host this SSH session reached
# (the server address in $SSH_CONNECTION) would print.
set -- $SSH_CONNECTION
exec cat "{hosts}/$3/{program}"
"""


class LoopbackFleet:
    """`servers` sshd processes (ports of their own) serving up to `size` hosts."""

    def __init__(self, size: int, *, servers: int = 4, max_startups: int = 2000) -> None:
        if not 1 <= size <= MAX_HOSTS:
            raise ValueError(f"between 1 and {MAX_HOSTS} hosts")
        self.size = size
        self.max_startups = max_startups
        # Readable by the sshd login user (not under root's 0700 temporary folders).
        self.dir = Path(tempfile.mkdtemp(prefix="tnagent-scale-"))
        self.dir.chmod(0o755)
        self.bin = self.dir / "bin"
        self.files = self.dir / "hosts"
        settings = (f"SetEnv PATH={self.bin}:/usr/local/bin:/usr/bin:/bin",
                    f"MaxStartups {max_startups}", "LogLevel INFO")
        first = Sshd(listen=("0.0.0.0",), settings=settings)
        self.sshd = [first] + [Sshd(listen=("0.0.0.0",), settings=settings,
                                    host_key=first.host_key) for _ in range(servers - 1)]
        for server in self.sshd[1:]:  # one client key logs in everywhere
            server.authorized_keys.write_text(first.authorized_keys.read_text())
        self.user = first.user
        self.client_key = first.client_key
        self.host_key_line = " ".join(
            Path(f"{first.host_key}.pub").read_text().split()[:2])
        names = host_names(size)
        self.hosts = [SimHost(i, names[i], address(i), self.sshd[i % servers].port,
                              disk_class(i)) for i in range(size)]
        self._write_host_files()

    def _write_host_files(self) -> None:
        for folder in (self.bin, self.files):
            folder.mkdir(mode=0o755)
        for program in ("hostname", "df"):
            script = self.bin / program
            script.write_text(_WRAPPER.format(program=program, hosts=self.files))
            script.chmod(0o755)
        for host in self.hosts:
            folder = self.files / host.address
            folder.mkdir(mode=0o755)
            (folder / "hostname").write_text(host.name + "\n")
            (folder / "df").write_text(host.df)

    def start(self) -> None:
        for server in self.sshd:
            server.start()

    def __enter__(self) -> LoopbackFleet:
        try:
            self.start()
        except BaseException:
            self.cleanup()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.cleanup()

    def first(self, n: int) -> list[SimHost]:
        return self.hosts[:n]

    def write_inventory(self, n: int, folder: Path) -> tuple[Path, Path]:
        """inventory.yaml and known_hosts for the first `n` hosts; returns both paths."""
        folder.mkdir(parents=True, exist_ok=True)
        known_hosts = folder / "known_hosts"
        known_hosts.write_text("".join(f"[{h.address}]:{h.port} {self.host_key_line}\n"
                                       for h in self.first(n)))
        inventory = folder / "inventory.yaml"
        inventory.write_text(yaml.safe_dump({"hosts": [
            {"name": h.name, "address": h.address, "user": self.user, "port": h.port,
             "key": str(self.client_key), "known_hosts": str(known_hosts)}
            for h in self.first(n)]}, sort_keys=False))
        return inventory, known_hosts

    def host_configs(self, n: int, folder: Path) -> dict[str, HostConfig]:
        """The first `n` hosts as the agent's host entries (their known_hosts in `folder`),
        for tests that build a service themselves."""
        _, known_hosts = self.write_inventory(n, folder)
        return {h.name: HostConfig(name=h.name, address=h.address, user=self.user,
                                   port=h.port, key_path=self.client_key,
                                   known_hosts=known_hosts) for h in self.first(n)}

    def sshd_pids(self) -> list[int]:
        """Every sshd process (listeners and per-connection children) and their shells."""
        pids: list[int] = []
        for server in self.sshd:
            proc = getattr(server, "_proc", None)  # the fixture keeps its Popen private
            if proc is not None and proc.poll() is None:
                pids += [proc.pid, *_descendants(proc.pid)]
        return pids

    def wait_sessions_gone(self, seconds: float = 30.0) -> int:
        """Wait for the per-connection sshd processes to exit; returns how many are left."""
        deadline = time.monotonic() + seconds
        while True:
            left = len(self.sshd_pids()) - len(self.sshd)
            if left <= 0 or time.monotonic() > deadline:
                return max(0, left)
            time.sleep(0.1)

    def cleanup(self) -> None:
        for server in self.sshd:
            proc = getattr(server, "_proc", None)
            if proc is not None:  # 1,000 sessions: kill them before sshd's own 5 s wait
                for pid in _descendants(proc.pid):
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
            server.cleanup()
        shutil.rmtree(self.dir, ignore_errors=True)
