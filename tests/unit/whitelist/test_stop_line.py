"""The one line the agent sends to stop commands it gave up on (`kill_process_groups`), run by
the real /bin/sh against real processes: a plain command's whole group is killed; a command run
through sudo is stopped through sudo, and never while the command under it is still starting
(GNU `timeout` would then exit and leave the command running, as root, with no timeout left)."""

from __future__ import annotations

import contextlib
import os
import random
import secrets
import shutil
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.support.sshd import _descendants
from tests.support.waiting import wait_until_sync
from whitelist.render import SUDO_STOP_ROUNDS, StopTarget, kill_process_groups

# A stand-in for sudo as the agent meets it: a process (here /bin/sh) that starts the real
# GNU `timeout` as its child and relays a TERM it gets to it, and ends when it has ended.
# A TERM that comes before the relay is set up kills the stand-in (so nothing starts); one
# that comes while the child's pid is not yet known is lost, as sudo may lose it.
RELAYING = ("trap 'kill -s TERM \"$c\" 2>/dev/null' TERM; "
            "timeout -k 2 30 /bin/sh -c 'sleep {mark}' & c=$!; wait \"$c\"; wait \"$c\"")
# A stand-in for a sudo that has not started its command (no child); it leaves on TERM.
NOT_STARTED = ("import signal, sys, time; signal.signal(signal.SIGTERM, lambda *_: sys.exit(0)); "
               "print('ready', flush=True); time.sleep(60)")


def stop(*targets: StopTarget | int,
         rounds: int = SUDO_STOP_ROUNDS) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(["/bin/sh", "-c", kill_process_groups(targets, sudo_rounds=rounds)],
                          timeout=15)


def reaped(popen: subprocess.Popen[bytes]) -> subprocess.Popen[bytes]:
    """Reap `popen` as soon as it exits, as sshd reaps sudo: a zombie would still take
    signals, so the stop line would count it as running."""
    threading.Thread(target=popen.wait, daemon=True).start()
    return popen


def running(pattern: str) -> list[str]:
    return subprocess.run(["pgrep", "-f", pattern], capture_output=True,
                          text=True).stdout.split()


def test_the_kill_line_names_only_reported_groups() -> None:
    # Each group, and its leader as a pid (a stop may come before `timeout` made the group).
    assert (kill_process_groups([4242, 17, 4242])
            == "kill -s KILL -- 17 -17 4242 -4242 2>/dev/null; exit 0")
    # sudo gets TERM (it relays that to the command; KILL would orphan the command).
    both = kill_process_groups([StopTarget(9, True), 17, StopTarget(12, True)])
    assert both.startswith("kill -s KILL -- 17 -17 2>/dev/null; n=0; ")
    assert "for p in 9 12; do " in both and both.endswith("; exit 0")
    # 1 would mean init's group, -1 every process, 0 the shell's own group: never.
    for bad in ([1], [0], [-1], [True], [5_000_000], [], [17, 1]):
        with pytest.raises(ValueError):
            kill_process_groups(bad)
    for rounds in (0, -1, True):
        with pytest.raises(ValueError):
            kill_process_groups([StopTarget(9, True)], sudo_rounds=rounds)


def test_the_kill_line_kills_a_whole_group() -> None:
    leader = subprocess.Popen(["/bin/sh", "-c", "sleep 30 | sleep 30"], start_new_session=True)
    try:
        assert stop(leader.pid).returncode == 0
        assert leader.wait(timeout=5) == -9
        wait_until_sync(lambda: not living(leader.pid), 2, "the whole group gone",
                        every=0.05)
    finally:
        if leader.poll() is None:
            leader.kill()


def test_the_stop_line_terms_a_sudo_until_it_is_gone() -> None:
    # A stand-in for sudo whose command runs (its `sleep`s) and that survives the first two
    # TERMs (as sudo may lose one): the line keeps sending until it has ended.
    script = ("n=0; trap 'n=$((n+1)); [ $n -ge 3 ] && exit 0' TERM; echo ready; "
              "while :; do sleep 0.05; done")
    survivor = reaped(subprocess.Popen(["/bin/sh", "-c", script], stdout=subprocess.PIPE))
    try:
        assert survivor.stdout is not None and survivor.stdout.readline() == b"ready\n"
        started = time.monotonic()
        assert stop(StopTarget(survivor.pid, True)).returncode == 0
        assert survivor.wait(timeout=5) == 0  # it saw its third TERM and left
        assert time.monotonic() - started < 3.5
    finally:
        if survivor.poll() is None:
            survivor.kill()
            survivor.wait()


@pytest.mark.skipif(shutil.which("timeout") is None, reason="needs GNU timeout (coreutils)")
def test_a_stop_at_any_moment_of_a_sudos_start_leaves_nothing_running() -> None:
    """120 stand-in sudos (6 at a time), each stopped at its own moment in the first 3 ms of
    its start, where `timeout` may be forking: nothing of any is left running. (A line that
    sent TERM at once left 29 of 300 commands running, each now outside any timeout.)"""
    mark = f"{secrets.randbelow(10**6) + 10**6}.125"

    def start_and_stop(_: int) -> int | None:
        sudo = reaped(subprocess.Popen(["/bin/sh", "-c", RELAYING.format(mark=mark)],
                                       stdin=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        time.sleep(random.uniform(0, 0.003))
        return stop(StopTarget(sudo.pid, True)).returncode

    try:
        with ThreadPoolExecutor(6) as pool:
            statuses = list(pool.map(start_and_stop, range(120)))
        assert statuses == [0] * 120  # each stand-in had ended when its stop returned
        time.sleep(0.2)  # a command `timeout` failed to stop would still be here
        assert running(f"sleep {mark}") == []
    finally:
        subprocess.run(["pkill", "-f", f"sleep {mark}"])


def test_a_sudo_that_never_starts_its_command_gets_no_term() -> None:
    """A TERM to a sudo still starting its command would race `timeout`'s start, so a sudo
    with nothing under it is left alone; the line says so with status 1 after its rounds."""
    pending = subprocess.Popen([sys.executable, "-c", NOT_STARTED], stdout=subprocess.PIPE)
    try:
        assert pending.stdout is not None and pending.stdout.readline() == b"ready\n"
        assert stop(StopTarget(pending.pid, True), rounds=20).returncode == 1
        assert pending.poll() is None  # never signalled
    finally:
        pending.kill()
        pending.wait()


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("unshare") is None,
                    reason="needs root and unshare(1) to hide /proc in a mount namespace")
def test_where_proc_lists_no_children_every_sudo_counts_as_started() -> None:
    """Without /proc's children lists (a kernel without CONFIG_PROC_CHILDREN, or hidepid) the
    line cannot see the command start: it sends TERM from its second round on, as before."""
    pending = reaped(subprocess.Popen([sys.executable, "-c", NOT_STARTED],
                                      stdout=subprocess.PIPE))
    try:
        assert pending.stdout is not None and pending.stdout.readline() == b"ready\n"
        hide_proc = 'mount -t tmpfs none /proc && exec /bin/sh -c "$0"'
        hidden = subprocess.run(["unshare", "--mount", "/bin/sh", "-c", hide_proc,
                                 kill_process_groups([StopTarget(pending.pid, True)])], timeout=15)
        assert hidden.returncode == 0
        assert pending.wait(timeout=5) == 0  # its TERM handler ran
    finally:
        if pending.poll() is None:
            pending.kill()
            pending.wait()


def living(pgid: int) -> list[str]:
    """Processes of a group that are not zombies (dead, waiting for a parent to reap them)."""
    listed = subprocess.run(["ps", "-o", "stat=,args=", "-g", str(pgid)], capture_output=True,
                            text=True).stdout.splitlines()
    return [line for line in listed if not line.strip().startswith("Z")]


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("setpriv") is None,
                    reason="needs root and setpriv(1) to run the line as another user")
def test_a_sudo_that_cannot_be_signalled_for_a_moment_is_not_taken_for_gone() -> None:
    """While sudo starts, its real uid is root at moments (seen here: 12 of 83 changes of its
    uids), so the login user's kill fails as for a process that has gone. The line must keep
    waiting for it: here a process of root's that has no command under it, and a line run as
    nobody, which ends its rounds with status 1 instead of returning at once."""
    rootly = reaped(subprocess.Popen([sys.executable, "-c", NOT_STARTED], stdout=subprocess.PIPE))
    try:
        assert rootly.stdout is not None and rootly.stdout.readline() == b"ready\n"
        line = kill_process_groups([StopTarget(rootly.pid, True)], sudo_rounds=10)
        as_nobody = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"]
        assert subprocess.run([*as_nobody, "/bin/sh", "-c", line], timeout=15).returncode == 1
        assert rootly.poll() is None
    finally:
        rootly.kill()
        rootly.wait()


def test_a_command_whose_timeout_has_not_yet_slept_is_not_started(tmp_path: Path) -> None:
    """`timeout` stores its child's pid before it first sleeps; until then (it is runnable,
    maybe waiting for a CPU at the end of fork) a TERM would still race it, even with the
    child running. Here a `timeout` that never sleeps (a busy loop by that name, with a
    `sleep` child) under a stand-in sudo: the line never counts its command as started. (Under
    a `timeout` that waits for its child, the stand-ins above are stopped.)"""
    busy = tmp_path / "timeout"
    busy.write_text("#!/bin/sh\nsleep 60 &\nwhile :; do :; done\n")
    busy.chmod(0o755)
    stand_in = ("import signal, subprocess, sys, time; "
                "signal.signal(signal.SIGTERM, lambda *_: sys.exit(0)); "
                f"subprocess.Popen([{str(busy)!r}]); print('ready', flush=True); time.sleep(60)")
    sudo = reaped(subprocess.Popen([sys.executable, "-c", stand_in], stdout=subprocess.PIPE))
    below: list[int] = []
    try:
        assert sudo.stdout is not None and sudo.stdout.readline() == b"ready\n"
        wait_until_sync(lambda: len(_descendants(sudo.pid)) == 2, 5, "timeout and its sleep")
        below = _descendants(sudo.pid)
        assert stop(StopTarget(sudo.pid, True), rounds=20).returncode == 1
        assert sudo.poll() is None  # never signalled
    finally:
        for pid in below:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        sudo.kill()
        sudo.wait()

