"""Peak resident memory of the test process, for tests that bound memory growth."""

from __future__ import annotations

from pathlib import Path


def reset_peak_rss() -> bool:
    """Reset VmHWM (Linux); False when the kernel does not allow it."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def peak_rss_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM in /proc/self/status")
