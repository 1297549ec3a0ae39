"""PyInstaller entry point for the single-file `tailnet-agent` executable."""

from __future__ import annotations

import atexit
import ctypes
import os
import shutil
import signal
import sys
from pathlib import Path

from agent.cli import main

_PR_SET_PDEATHSIG = 1


def _follow_the_bootloader() -> None:
    """Shut down cleanly when the onefile bootloader, our parent, dies.

    The bootloader forwards SIGTERM/SIGINT to us and deletes the unpack directory
    after we exit. If it is killed outright (SIGKILL, OOM killer), nothing tells us:
    we would keep serving as an orphan, tailscaled with us, and the unpack directory
    would stay. So ask the kernel for SIGTERM on its death (the agent's normal,
    graceful stop), and clean the unpack directory ourselves in that case.
    """
    bundle = getattr(sys, "_MEIPASS", None)
    if not getattr(sys, "frozen", False) or bundle is None or not sys.platform.startswith("linux"):
        return
    if Path(bundle).resolve() == Path(sys.executable).resolve().parent:
        return  # a one-directory build: no bootloader parent to follow
    bootloader = os.getppid()
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0) != 0:
        return  # not fatal: only the SIGKILL-of-the-parent case loses its cleanup

    def remove_orphaned_bundle() -> None:
        if os.getppid() != bootloader:  # nobody else is left to remove it
            shutil.rmtree(bundle, ignore_errors=True)

    atexit.register(remove_orphaned_bundle)
    # If the bootloader died before prctl took effect, our parent is no longer it.
    try:
        parent_exe = os.readlink(f"/proc/{os.getppid()}/exe")
    except OSError:
        parent_exe = ""
    if parent_exe != os.path.realpath(sys.executable):
        atexit.register(shutil.rmtree, bundle, True)
        os.kill(os.getpid(), signal.SIGTERM)

if __name__ == "__main__":
    _follow_the_bootloader()
    sys.exit(main())
