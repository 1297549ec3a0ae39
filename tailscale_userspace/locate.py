"""Finding the tailscaled executable.

Order: the explicit path (the agent's --tailscaled flag), $TAILSCALED, a copy
shipped next to our own executable (the PyInstaller single-file build unpacks
it into sys._MEIPASS), then PATH.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

from .errors import TailscaledNotFound, TailscaleError

TAILSCALE_VERSION = "v1.98.8"

_HOW_TO_GET_IT = (
    "install it with `go install tailscale.com/cmd/tailscaled@"
    + TAILSCALE_VERSION
    + "` (puts it in $(go env GOPATH)/bin), or the `tailscale` package of your "
    "distribution (https://pkgs.tailscale.com/stable/), then pass --tailscaled PATH "
    "or set TAILSCALED=PATH"
)


def _is_executable(path: Path) -> bool:
    return path.is_file() and os.access(path, os.X_OK)


def embedded_dir() -> Path:
    """Where a bundled tailscaled would sit next to the running executable."""
    bundle = getattr(sys, "_MEIPASS", None)
    if getattr(sys, "frozen", False) and bundle:
        return Path(bundle)
    return Path(sys.executable).resolve().parent


def find_tailscaled(
    explicit: str | os.PathLike[str] | None = None,
    environ: Mapping[str, str] | None = None,
) -> Path:
    env = os.environ if environ is None else environ
    if explicit is not None and str(explicit) != "":
        path = Path(explicit).expanduser()
        if _is_executable(path):
            return path.resolve()
        raise TailscaledNotFound(
            f"tailscaled {str(explicit)!r} (from --tailscaled or TAILSCALED) is not an "
            f"executable file; fix the path or {_HOW_TO_GET_IT}"
        )
    from_env = env.get("TAILSCALED", "")
    if from_env:
        path = Path(from_env).expanduser()
        if _is_executable(path):
            return path.resolve()
        raise TailscaledNotFound(
            f"TAILSCALED={from_env!r} is not an executable file; "
            f"fix or unset it, or {_HOW_TO_GET_IT}"
        )
    embedded = embedded_dir() / "tailscaled"
    if _is_executable(embedded):
        return embedded
    on_path = shutil.which("tailscaled", path=env.get("PATH", os.defpath))
    if on_path:
        return Path(on_path).resolve()
    raise TailscaledNotFound(
        f"tailscaled not found (looked at --tailscaled, $TAILSCALED, {embedded} and PATH); "
        + _HOW_TO_GET_IT
    )


def tailscaled_version(tailscaled: str | os.PathLike[str]) -> str:
    """The version tailscaled reports (first line of `tailscaled --version`)."""
    try:
        done = subprocess.run(
            [os.fspath(tailscaled), "--version"],
            capture_output=True,
            text=True,
            timeout=15,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise TailscaleError(
            f"cannot run {os.fspath(tailscaled)!r} --version: {exc}; check that it is a "
            "tailscaled built for this platform"
        ) from exc
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        raise TailscaleError(
            f"{os.fspath(tailscaled)!r} --version failed (exit {done.returncode}): "
            f"{done.stderr.strip()[:200]}; is it really tailscaled?"
        )
    return lines[0].strip()
