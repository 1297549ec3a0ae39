"""`tailnet-agent version`: our version and the tailscaled we would run; with --verbose,
every package this copy of the agent runs on and its version.

The single executable lists what its build bundled, from the CycloneDX SBOM the build put
inside it (build/sbom.py); an installed agent lists the distributions it requires,
transitively, as installed here (their metadata, markers evaluated by `packaging`).
"""

from __future__ import annotations

import json
import platform
import sys
from importlib import metadata
from pathlib import Path

from agent import __version__
from tailscale_userspace import TailscaleError, find_tailscaled, tailscaled_version

# The SBOM's name at the bundle's root (build/tailnet-agent.spec puts it there) and next to
# the executable in dist/.
BUNDLED_SBOM = "tailnet-agent.cdx.json"
DISTRIBUTION = "tailnet-agent"


def run_version(verbose: bool = False) -> int:
    print(f"tailnet-agent {__version__}")
    try:
        path = find_tailscaled()
        frozen_dir = getattr(sys, "_MEIPASS", None)
        where = "embedded" if frozen_dir and path.parent == Path(frozen_dir) else str(path)
        print(f"tailscaled {tailscaled_version(path)} ({where})")
    except TailscaleError as exc:  # version must never fail because tailscaled is absent
        print(f"tailscaled: not found ({exc})")
    if verbose:
        frozen_dir = getattr(sys, "_MEIPASS", None)
        if frozen_dir is not None:
            _print_bundled(Path(frozen_dir) / BUNDLED_SBOM)
        else:
            _print_installed()
    return 0


def _print_bundled(sbom: Path) -> None:
    try:
        components = json.loads(sbom.read_text())["components"]
    except (OSError, ValueError, KeyError):
        print("bundled: this executable carries no SBOM (build it with `make dist`)")
        return
    print(f"bundled, from the CycloneDX SBOM inside this executable ({len(components)} "
          "components):")
    for component in sorted(components, key=lambda c: str(c["name"]).lower()):
        print(f"  {component['name']} {component['version']}")


def _print_installed() -> None:
    versions = installed_requirements()
    print(f"installed, from this environment's package metadata ({len(versions)} packages, "
          f"Python {platform.python_version()}):")
    for name in sorted(versions, key=str.lower):
        print(f"  {name} {versions[name]}")


def installed_requirements(root: str = DISTRIBUTION) -> dict[str, str]:
    """Name (normalised) and version of every installed distribution `root` requires,
    transitively, with the extras asked for followed and requirements for other platforms
    skipped."""
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    found: dict[str, tuple[str, str, set[str]]] = {}  # key: (name, version, extras seen)
    todo: list[tuple[str, frozenset[str]]] = [(root, frozenset())]
    while todo:
        name, extras = todo.pop()
        key = canonicalize_name(name)
        if key in found and extras <= found[key][2]:
            continue
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue  # not for this platform, or not installed: nothing runs it here
        seen = found.get(key, (key, dist.version, set()))[2] | extras
        found[key] = (key, dist.version, seen)
        for text in dist.requires or []:
            requirement = Requirement(text)
            marker = requirement.marker
            if marker is None or any(marker.evaluate({"extra": e}) for e in extras | {""}):
                todo.append((requirement.name, frozenset(requirement.extras)))
    found.pop(canonicalize_name(root), None)
    return {name: version for name, version, _ in found.values()}
