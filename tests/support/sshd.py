"""A real OpenSSH sshd on 127.0.0.1 for tests, with its own keys, config and login user.

As root, sshd logs in a dedicated user (default `tnagent`, env
TAILNET_AGENT_TEST_USER) whose login shell is /bin/sh; the user is created if
missing. Unprivileged, sshd can only log in the current user.

Its fixtures (`sshd`, `ssh_host`, `sshd_factory`) are registered for every test by
tests/conftest.py (pytest_plugins): a test names them as arguments and imports only the
helpers (`Sshd`, `login_writable`, ...).
"""

from __future__ import annotations

import contextlib
import getpass
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest

from agent.hosts.inventory import HostConfig
from tests.support.components import missing
from tests.support.ports import free_port
from tests.support.waiting import wait_until_sync

SSHD_CANDIDATES = ("/usr/sbin/sshd", "/usr/local/sbin/sshd")
DEFAULT_TEST_USER = "tnagent"
PASSPHRASE = "correct horse battery staple"
READY_TIMEOUT = 10.0
# Every session of a test's sshd has this variable in its environment (sshd_config
# SetEnv), with a value of that sshd's own: what its sessions started can be told apart
# from what other test runs start as the same user, even once it was orphaned (a process
# keeps its environment when it is reparented; it leaves its sshd's process tree).
SESSION_MARK = "TAILNET_AGENT_TEST_SSHD"


def _sshd_path() -> str:
    for path in SSHD_CANDIDATES:
        if os.access(path, os.X_OK):
            return path
    found = shutil.which("sshd")
    if found:
        return found
    missing("OpenSSH sshd", "apt-get install openssh-server")


def _keygen(path: Path, passphrase: str = "", comment: str = "tailnet-agent-test") -> None:
    ssh_keygen = shutil.which("ssh-keygen")
    if ssh_keygen is None:
        missing("ssh-keygen", "apt-get install openssh-client")
    path.unlink(missing_ok=True)
    Path(f"{path}.pub").unlink(missing_ok=True)
    subprocess.run(
        [ssh_keygen, "-q", "-t", "ed25519", "-N", passphrase, "-C", comment, "-f", str(path)],
        check=True,
        stdin=subprocess.DEVNULL,
    )


def ensure_user(name: str, shell: str) -> str:
    """Create a login user with `shell` (root only); return its name.

    Idempotent and quiet when the user is already right, because several test
    sessions may share the user and useradd/usermod fail while another holds
    the /etc/passwd lock.
    """
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        _account_tool(["useradd", "-m", "-s", shell, name])
    else:
        if entry.pw_shell != shell:
            _account_tool(["usermod", "-s", shell, name])
    # useradd leaves the password field as "!" (locked); with UsePAM no, sshd refuses
    # locked accounts even for key logins. "*" means no password, but not locked.
    if _password_field(name).startswith("!"):
        _account_tool(["usermod", "-p", "*", name])
    return name


def _password_field(name: str) -> str:
    for line in Path("/etc/shadow").read_text().splitlines():
        fields = line.split(":")
        if fields[0] == name and len(fields) > 1:
            return fields[1]
    return ""


def _account_tool(argv: list[str]) -> None:
    for attempt in range(20):
        done = subprocess.run(argv, capture_output=True, text=True)
        if done.returncode == 0:
            return
        if "lock" not in done.stderr or attempt == 19:
            # useradd exits 9 when the user appeared meanwhile (another session made it).
            if argv[0] == "useradd" and done.returncode == 9:
                return
            raise RuntimeError(f"{' '.join(argv)} failed: {done.stderr.strip()}")
        time.sleep(0.25)


def default_user() -> str:
    if os.geteuid() == 0:
        return ensure_user(os.environ.get("TAILNET_AGENT_TEST_USER", DEFAULT_TEST_USER), "/bin/sh")
    return getpass.getuser()


class Sshd:
    """One sshd process with its own host key, client keys and known_hosts file."""

    def __init__(
        self,
        *,
        users: tuple[str, ...] | None = None,
        port: int | None = None,
        listen: Sequence[str] = ("127.0.0.1",),
        run_in: Sequence[str] = (),
        host_key: Path | None = None,
        settings: Sequence[str] = (),
    ) -> None:
        """`run_in` prefixes sshd's argv (nsenter into a node's namespaces, tests/support/
        fleet.py); `listen` are its addresses, the last one is where readiness is checked;
        `host_key` is an existing key to serve instead of a fresh one; `settings` are
        sshd_config lines that win over ours (sshd keeps a keyword's first value)."""
        self.sshd = _sshd_path()
        self.users = users or (default_user(),)
        self.user = self.users[0]
        # Not under pytest's tmp_path: sshd reads authorized_keys as the login user,
        # who cannot enter root's 0700 pytest directories.
        self.dir = Path(tempfile.mkdtemp(prefix="tnagent-sshd-"))
        self.dir.chmod(0o755)
        self.port = port or free_port()
        self._port_chosen = port is None  # ours to change if taken before the first start
        self.listen = tuple(listen)
        self.run_in = tuple(run_in)
        self.settings = tuple(settings)
        self.host_key = host_key or self.dir / "ssh_host_ed25519_key"
        self.client_key = self.dir / "id_ed25519"
        self.encrypted_key = self.dir / "id_ed25519_pass"
        self.other_key = self.dir / "id_ed25519_other"  # not authorized anywhere
        self.authorized_keys = self.dir / "authorized_keys"
        self.known_hosts = self.dir / "known_hosts"
        self.config = self.dir / "sshd_config"
        self.log = self.dir / "sshd.log"
        self.pid_file = self.dir / "sshd.pid"
        self.mark = f"{SESSION_MARK}={secrets.token_hex(8)}"  # in each session's environment
        self._proc: subprocess.Popen[bytes] | None = None

        if host_key is None:
            _keygen(self.host_key, comment="test-host")
        _keygen(self.client_key)
        _keygen(self.encrypted_key, passphrase=PASSPHRASE)
        _keygen(self.other_key)
        self.authorized_keys.write_text(
            Path(f"{self.client_key}.pub").read_text()
            + Path(f"{self.encrypted_key}.pub").read_text()
        )
        self.authorized_keys.chmod(0o644)
        self._write_config()
        self.pin_host_key()

    @property
    def pid(self) -> int:
        assert self._proc is not None, "sshd is not running"
        return self._proc.pid

    @property
    def address(self) -> str:
        return self.listen[-1]

    def _write_config(self) -> None:
        # sshd takes the first SetEnv line only: one line, the caller's variables first.
        setenv = [value for line in self.settings if line.split()[:1] == ["SetEnv"]
                  for value in line.split()[1:]]
        lines = [
            *(line for line in self.settings if line.split()[:1] != ["SetEnv"]),
            f"SetEnv {' '.join([*setenv, self.mark])}",
            f"Port {self.port}",
            *(f"ListenAddress {address}" for address in self.listen),
            f"HostKey {self.host_key}",
            f"PidFile {self.pid_file}",
            f"AuthorizedKeysFile {self.authorized_keys}",
            "UsePAM no",
            "StrictModes no",
            "PubkeyAuthentication yes",
            "PasswordAuthentication no",
            "KbdInteractiveAuthentication no",
            "PermitRootLogin no",
            f"AllowUsers {' '.join(self.users)}",
            "MaxSessions 10",
            "MaxStartups 50:30:100",
            "UseDNS no",
            "PrintMotd no",
            "LogLevel VERBOSE",
        ]
        self.config.write_text("\n".join(lines) + "\n")

    def pin_host_key(self) -> None:
        """Write known_hosts with the current host key (as `tailnet-agent trust` would)."""
        key_type, key_data = Path(f"{self.host_key}.pub").read_text().split()[:2]
        self.known_hosts.write_text(f"[{self.address}]:{self.port} {key_type} {key_data}\n")

    def start(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            return
        if os.geteuid() == 0:
            Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # privilege-separation dir
        for attempt in range(3):
            with self.log.open("ab") as log:
                self._proc = subprocess.Popen(
                    [*self.run_in, self.sshd, "-D", "-e", "-f", str(self.config)],
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=log,
                )
            try:
                self._wait_ready()
                break
            except RuntimeError:
                # Another process took the port between free_port and sshd's bind: before
                # the first start nobody knows the port yet, so take another one.
                if (attempt == 2 or not self._port_chosen or self._proc.poll() is None
                        or "Address already in use" not in self.log_text()):
                    raise
                self.port = free_port()
                self._write_config()
                self.pin_host_key()
        self._port_chosen = False  # clients know it now: a restart keeps it

    def _wait_ready(self) -> None:
        process = self._proc
        assert process is not None

        def greets() -> bool:
            if process.poll() is not None:
                raise RuntimeError(f"sshd exited at start; its log:\n{self.log_text()}")
            with (
                contextlib.suppress(OSError),
                socket.create_connection((self.address, self.port), timeout=1) as s,
            ):
                return s.recv(64).startswith(b"SSH-2.0-")
            return False

        try:
            wait_until_sync(greets, READY_TIMEOUT, f"sshd greeting on port {self.port}",
                            every=0.05)
        except AssertionError as exc:
            raise RuntimeError(f"{exc}; its log:\n{self.log_text()}") from None

    def stop(self) -> None:
        """Stop sshd and every session it serves, so clients see their connections drop."""
        if self._proc is None:
            return
        pids = _descendants(self._proc.pid)
        self._proc.terminate()
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        try:
            self._proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        self._proc = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def regenerate_host_key(self) -> None:
        """Give the server a new host key (known_hosts keeps the old one) and restart."""
        _keygen(self.host_key, comment="test-host-new")
        if self._proc is not None:
            self.restart()

    def host_config(
        self,
        name: str = "test",
        *,
        user: str | None = None,
        key_path: Path | None = None,
        key_passphrase: str | None = None,
        known_hosts: Path | None = None,
        port: int | None = None,
    ) -> HostConfig:
        return HostConfig(
            name=name,
            address=self.address,
            user=user or self.user,
            port=port or self.port,
            key_path=key_path or self.client_key,
            key_passphrase=key_passphrase,
            known_hosts=known_hosts or self.known_hosts,
        )

    def processes(self, pattern: str, *, user: str | None = None) -> list[str]:
        """What this sshd's sessions run (orphans included) whose command line matches
        `pattern`, as `user` (default: the login user), as `pgrep -a` lists it. Another test
        run's processes are left out, even those of the same user and command."""
        return [line for line in remote_processes(user or self.user, pattern)
                if self.mark.encode() in _environment(int(line.split()[0]))]

    def wait_until_gone(self, pattern: str, seconds: float = 5.0, *,
                        user: str | None = None) -> list[str]:
        """`processes`, once they have gone or `seconds` have passed."""
        return _until_gone(lambda: self.processes(pattern, user=user), seconds)

    def kill(self, pattern: str, *, user: str | None = None) -> None:
        """SIGKILL what `processes` lists (a test's clean-up: nobody else's processes)."""
        for line in self.processes(pattern, user=user):
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(line.split()[0]), signal.SIGKILL)

    def loopback_hosts(self, n: int, folder: Path, prefix: str = "h") -> dict[str, HostConfig]:
        """`n` distinct hosts h1..hn on 127.0.1.1..n for an sshd listening on 0.0.0.0 (every
        127.0.0.0/8 address is local), pinned in one known_hosts file in `folder`."""
        key_type, key_data = Path(f"{self.host_key}.pub").read_text().split()[:2]
        known = folder / "known_hosts"
        addresses = [f"127.0.{1 + i // 250}.{1 + i % 250}" for i in range(n)]
        known.write_text("".join(f"[{a}]:{self.port} {key_type} {key_data}\n"
                                 for a in addresses))
        return {f"{prefix}{i + 1}": HostConfig(
            name=f"{prefix}{i + 1}", address=a, user=self.user, port=self.port,
            key_path=self.client_key, known_hosts=known) for i, a in enumerate(addresses)}

    def connected_addresses(self) -> set[str]:
        """The addresses that have a TCP connection to this sshd open, as the kernel says."""
        out = subprocess.run(["ss", "-Htn", "state", "established", f"sport = :{self.port}"],
                             capture_output=True, text=True, check=True).stdout
        return {line.split()[2].rsplit(":", 1)[0] for line in out.splitlines() if line.strip()}

    def log_text(self) -> str:
        try:
            return self.log.read_text(errors="replace")
        except OSError:
            return "(no log)"

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


@contextlib.contextmanager
def login_writable(prefix: str) -> Iterator[Path]:
    """A fresh directory the SSH login user may write in (not under pytest's tmp_path:
    that user cannot enter root's 0700 directories), removed afterwards."""
    directory = Path(tempfile.mkdtemp(prefix=prefix))
    directory.chmod(0o777)
    try:
        yield directory
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def accepted_logins(server: Sshd) -> int:
    return server.log_text().count("Accepted publickey")


def remote_processes(user: str, pattern: str) -> list[str]:
    found = subprocess.run(["pgrep", "-a", "-u", user, "-f", pattern], capture_output=True)
    return found.stdout.decode().splitlines()


def wait_until_gone(user: str, pattern: str, seconds: float = 5.0) -> list[str]:
    return _until_gone(lambda: remote_processes(user, pattern), seconds)


def _until_gone(listed: Callable[[], list[str]], seconds: float) -> list[str]:
    """What `listed` lists once it lists nothing ([]), or after `seconds` (what is left: the
    caller's assert shows it)."""
    try:
        wait_until_sync(lambda: not listed(), seconds, "the processes gone", every=0.1)
    except AssertionError:
        return listed()
    return []


def _environment(pid: int) -> list[bytes]:
    """The environment `pid` started with (empty once it is exiting or gone)."""
    try:
        return Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    except OSError:
        return []


def _descendants(root: int) -> list[int]:
    """All processes below `root` (sshd's per-connection processes and their children)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    found: list[int] = []
    todo = [root]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


@pytest.fixture(scope="session")
def sshd() -> Iterator[Sshd]:
    """One sshd for the whole session. Tests that restart or rekey use `sshd_factory`."""
    server = Sshd()
    server.start()
    yield server
    server.cleanup()


@pytest.fixture(scope="session")
def ssh_host(sshd: Sshd) -> HostConfig:
    return sshd.host_config()


@pytest.fixture
def sshd_factory() -> Iterator[Callable[..., Sshd]]:
    """Make private sshd instances (started) that the test may stop, restart or rekey."""
    made: list[Sshd] = []

    def make(**kwargs: object) -> Sshd:
        server = Sshd(**kwargs)  # type: ignore[arg-type]
        made.append(server)
        server.start()
        return server

    yield make
    for server in made:
        server.cleanup()
