"""Running the built single-file executable the way a user would, and watching it.

The smoke tests drive `dist/tailnet-agent` itself, never the source tree: an empty
working directory, an environment built from scratch (no PYTHON* variables) and a
PATH holding only symlinks to the few system tools the commands need, with no
Python on it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import queue
import re
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

from tests.support.artifacts import BUILD_FIGURES, update_json
from tests.support.components import missing

REPO = Path(__file__).resolve().parents[2]
EXECUTABLE = REPO / "dist" / "tailnet-agent"
MAX_SIZE = 80 * 1024 * 1024

# What the commands we call need on the agent's machine (the demo target runs them
# locally with /bin/sh): the shell, `timeout` (wraps every command) and the tools
# behind check_memory / check_disk.
TOOLS = ("sh", "timeout", "free", "df", "cat", "ps", "awk", "uptime", "uname", "env")


def executable() -> Path:
    if not (EXECUTABLE.is_file() and os.access(EXECUTABLE, os.X_OK)):
        missing(
            f"the built executable {EXECUTABLE}",
            "build it with `make dist` (sh build/build.sh); the smoke tests run the binary",
        )
    return EXECUTABLE


def tools_dir(root: Path) -> Path:
    """A directory of symlinks to TOOLS only, to serve as the whole PATH."""
    bin_dir = root / "bin"
    bin_dir.mkdir()
    for tool in TOOLS:
        found = shutil.which(tool, path="/usr/bin:/bin")
        if found:
            (bin_dir / tool).symlink_to(found)
    assert shutil.which("python3", path=str(bin_dir)) is None
    assert shutil.which("python", path=str(bin_dir)) is None
    return bin_dir


def user_env(root: Path, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """A from-scratch environment: PATH without Python, private HOME and TMPDIR."""
    home = root / "home"
    tmp = root / "tmp"
    for d in (home, tmp):
        d.mkdir(mode=0o700)
    env = {
        "PATH": str(tools_dir(root)),
        "HOME": str(home),
        "TMPDIR": str(tmp),
        "LANG": "C.UTF-8",
    }
    env.update(extra or {})
    return env


class Running:
    """The executable started by a test: its process, its output so far, its start time.

    A thread collects stdout lines, so waiting for a line has a real deadline and an
    async test can wait without blocking its event loop (tailscaled nodes in the same
    loop must keep being served).
    """

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.process = process
        self.started = time.monotonic()
        self.lines: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self._queue.put(line)
        self._queue.put(None)

    def read_until(self, pattern: str, timeout: float) -> re.Match[str]:
        """Collect output lines until one matches `pattern`; fail with the output so far."""
        deadline = time.monotonic() + timeout
        regex = re.compile(pattern)
        while (left := deadline - time.monotonic()) > 0:
            try:
                line = self._queue.get(timeout=left)
            except queue.Empty:
                break
            if line is None:
                self._queue.put(None)  # stays at end of output for later readers
                break
            self.lines.append(line)
            if match := regex.search(line):
                return match
        raise AssertionError(
            f"no line matching {pattern!r} within {timeout:g}s "
            f"(exit code {self.process.poll()}); output:\n{self.output()}"
        )

    async def wait_for(self, pattern: str, seconds: float) -> re.Match[str]:
        return await asyncio.to_thread(self.read_until, pattern, seconds)

    def output(self) -> str:
        return "".join(self.lines)

    def _drain(self) -> None:
        self._reader.join(timeout=5)
        while True:
            try:
                line = self._queue.get_nowait()
            except queue.Empty:
                return
            if line is not None:
                self.lines.append(line)

    def terminate(self, timeout: float = 30.0) -> int:
        """SIGTERM the bootloader (the parent), as a service manager would; wait for exit."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            self._drain()
            raise AssertionError(
                f"{EXECUTABLE.name} did not exit within {timeout:g}s of SIGTERM; output:\n"
                + self.output()
            ) from None
        self._drain()
        return self.process.returncode

    async def aterminate(self, seconds: float = 30.0) -> int:
        return await asyncio.to_thread(self.terminate, seconds)


@contextlib.contextmanager
def run(args: list[str], *, cwd: Path, env: Mapping[str, str]) -> Iterator[Running]:
    process = subprocess.Popen(
        [str(executable()), *args],
        cwd=cwd,
        env=dict(env),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,  # logs and banner interleaved, as a user sees them
        text=True,
    )
    running = Running(process)
    try:
        yield running
    finally:
        # A failed test must not leave an agent (or its tailscaled) running: kill the
        # whole tree, children first, not only the bootloader.
        if process.poll() is None:
            for pid in reversed(process_tree(process.pid)):
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGKILL)
            process.wait()


# -- the process tree ------------------------------------------------------------------


def _ppid(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may contain spaces; fields after ")" are fixed.
    return int(stat.rsplit(")", 1)[1].split()[1])


def process_tree(root: int) -> list[int]:
    """`root` and all its descendants: bootloader, Python child, tailscaled."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            parent = _ppid(int(entry.name))
            if parent is not None:
                children.setdefault(parent, []).append(int(entry.name))
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo.extend(children.get(pid, []))
    return tree


def exe_of(pid: int) -> str:
    with contextlib.suppress(OSError):
        return os.readlink(f"/proc/{pid}/exe")
    return ""


def _kib(path: str, key: str) -> int:
    with contextlib.suppress(OSError):
        for line in Path(path).read_text().splitlines():
            if line.startswith(key):
                return int(line.split()[1])
    return 0


def tree_rss_mib(root: int) -> float:
    """Sum of VmRSS over the tree; counts pages the processes share once per process."""
    return sum(_kib(f"/proc/{pid}/status", "VmRSS:") for pid in process_tree(root)) / 1024


def tree_pss_mib(root: int) -> float:
    """Proportional set size over the tree: shared pages split between their users."""
    return sum(_kib(f"/proc/{pid}/smaps_rollup", "Pss:") for pid in process_tree(root)) / 1024


def unpack_dirs(tmpdir: Path) -> list[Path]:
    """PyInstaller onefile unpacks into $TMPDIR/_MEIxxxxxx."""
    return sorted(tmpdir.glob("_MEI*"))


# -- figures for the issue note --------------------------------------------------------


def record_figure(name: str, value: float, unit: str) -> None:
    """Add one measurement to test-artifacts/build-figures.json (read by build/measure.sh)."""
    update_json(BUILD_FIGURES, name, {"value": round(value, 1), "unit": unit})
