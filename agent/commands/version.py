"""`tailnet-agent version`: our version and the tailscaled we would run."""

from __future__ import annotations

import sys
from pathlib import Path

from agent import __version__
from tailscale_userspace import TailscaleError, find_tailscaled, tailscaled_version


def run_version() -> int:
    print(f"tailnet-agent {__version__}")
    try:
        path = find_tailscaled()
        frozen_dir = getattr(sys, "_MEIPASS", None)
        where = "embedded" if frozen_dir and path.parent == Path(frozen_dir) else str(path)
        print(f"tailscaled {tailscaled_version(path)} ({where})")
    except TailscaleError as exc:  # version must never fail because tailscaled is absent
        print(f"tailscaled: not found ({exc})")
    return 0
