"""The CycloneDX SBOM (JSON, spec 1.6) of what a build actually put in, not of what
pyproject.toml asks for.

- The executable (build/tailnet-agent.spec, after PyInstaller's analysis): every installed
  Python distribution with at least one file among those PyInstaller collected (so the
  test and build tools, and what the spec excludes, are not in it), each with the sha256 of
  the very wheel uv.lock pinned for this platform; CPython (its standard library and
  interpreter are bundled); the embedded tailscaled; and the system packages owning the
  shared libraries PyInstaller copied from the build machine (dpkg).
- The image (build/image_root.py): the executable's SBOM, plus the system packages owning
  the files image_root.py copied into the root filesystem.

cyclonedx-python-lib builds, serialises and validates it against the schema (the
project's reference library, instead of hand-written JSON). Runs at build time only.
"""

from __future__ import annotations

import json
import platform
import re
import subprocess
import sys
import tomllib
from collections.abc import Iterable
from importlib import metadata
from pathlib import Path

from cyclonedx.contrib.license.factories import LicenseFactory
from cyclonedx.model import HashAlgorithm, HashType
from cyclonedx.model.bom import Bom
from cyclonedx.model.component import Component, ComponentType
from cyclonedx.output.json import JsonV1Dot6
from cyclonedx.schema import SchemaVersion
from cyclonedx.validation.json import JsonStrictValidator
from packageurl import PackageURL
from packaging.utils import canonicalize_name, parse_wheel_filename

ROOT = Path(__file__).resolve().parents[1]
NAME = "tailnet-agent"


def _resolved(paths: Iterable[str | Path]) -> set[Path]:
    found = set()
    for path in paths:
        try:
            found.add(Path(path).resolve())
        except (OSError, RuntimeError):
            continue
    return found


def bundled_distributions(collected: Iterable[str | Path]) -> list[metadata.Distribution]:
    """Installed distributions with at least one file (beyond their metadata) collected."""
    files = _resolved(collected)
    found: dict[str, metadata.Distribution] = {}
    for dist in metadata.distributions():
        name = canonicalize_name(dist.metadata["Name"])
        if name in found or name == NAME:
            continue
        for record in dist.files or ():
            if ".dist-info/" in str(record).replace("\\", "/") + "/":
                continue
            if Path(str(dist.locate_file(record))).resolve() in files:
                found[name] = dist
                break
    return sorted(found.values(), key=lambda d: canonicalize_name(d.metadata["Name"]))


def _locked_wheels(lock: Path) -> dict[tuple[str, str], list[dict[str, str]]]:
    packages = tomllib.loads(lock.read_text())["package"]
    return {(canonicalize_name(p["name"]), p["version"]): p.get("wheels", []) for p in packages}


def _wheel_hash(dist: metadata.Distribution,
                locked: dict[tuple[str, str], list[dict[str, str]]]) -> str | None:
    """The sha256 uv.lock gives the wheel this distribution was installed from (matched by
    the tags its WHEEL file records)."""
    tags = set(re.findall(r"^Tag: (\S+)$", dist.read_text("WHEEL") or "", flags=re.MULTILINE))
    name = canonicalize_name(dist.metadata["Name"])
    for wheel in locked.get((name, dist.version), []):
        filename = wheel["url"].rsplit("/", 1)[-1]
        if {str(t) for t in parse_wheel_filename(filename)[3]} == tags:
            return wheel["hash"].removeprefix("sha256:")
    return None


def python_component(dist: metadata.Distribution,
                     locked: dict[tuple[str, str], list[dict[str, str]]]) -> Component:
    name = canonicalize_name(dist.metadata["Name"])
    wheel_hash = _wheel_hash(dist, locked)
    licence = dist.metadata.get("License-Expression")
    return Component(
        type=ComponentType.LIBRARY, name=name, version=dist.version,
        purl=PackageURL("pypi", name=name, version=dist.version),
        bom_ref=f"pypi:{name}@{dist.version}",
        hashes=[HashType(alg=HashAlgorithm.SHA_256, content=wheel_hash)] if wheel_hash else [],
        licenses=[LicenseFactory().make_from_string(licence)] if licence else [],
    )


def _os_release() -> dict[str, str]:
    try:
        text = Path("/etc/os-release").read_text()
    except OSError:
        return {}
    return {k: v.strip('"') for k, _, v in (line.partition("=") for line in text.splitlines())}


def system_packages(paths: Iterable[str | Path]) -> list[Component]:
    """The distribution packages (dpkg) owning `paths`; paths no package owns are left out
    (they belong to a component listed otherwise, such as CPython)."""
    distro = _os_release().get("ID", "debian")
    owners: set[str] = set()
    for path in paths:
        real = Path(path).resolve()
        for candidate in {str(path), str(real), re.sub(r"^/usr(?=/lib)", "", str(real))}:
            done = subprocess.run(["dpkg", "-S", candidate], capture_output=True, text=True,
                                  check=False)
            if done.returncode == 0:
                owners.add(done.stdout.split(": ", 1)[0].split(", ")[0])
                break
    found = []
    for owner in sorted(owners):
        done = subprocess.run(["dpkg-query", "-W", "-f", "${Package} ${Version} ${Architecture}",
                               owner], capture_output=True, text=True, check=True)
        package, version, arch = done.stdout.split()
        found.append(Component(
            type=ComponentType.LIBRARY, name=package, version=version,
            purl=PackageURL("deb", distro, package, version, {"arch": arch}),
            bom_ref=f"deb:{package}@{version}"))
    return found


def _tailscaled_component(tailscaled: Path) -> Component:
    first = subprocess.run([str(tailscaled), "--version"], capture_output=True, text=True,
                           check=True).stdout.split()[0]  # e.g. 1.98.8-tailnet-agent-trimmed
    release = first.split("-")[0]
    return Component(type=ComponentType.APPLICATION, name="tailscaled", version=first,
                     purl=PackageURL("golang", "tailscale.com", "tailscale", f"v{release}"),
                     bom_ref=f"golang:tailscaled@{first}",
                     licenses=[LicenseFactory().make_from_string("BSD-3-Clause")])


def _python_itself() -> Component:
    version = platform.python_version()
    return Component(type=ComponentType.PLATFORM, name="cpython", version=version,
                     purl=PackageURL("generic", name="cpython", version=version),
                     bom_ref=f"cpython@{version}",
                     licenses=[LicenseFactory().make_from_string("PSF-2.0")])


def _bom(root: Component, components: Iterable[Component]) -> Bom:
    bom = Bom()
    bom.metadata.component = root
    listed = list(components)
    bom.components.update(listed)
    bom.register_dependency(root, listed)
    return bom


def executable_bom(collected: Iterable[str | Path], tailscaled: Path, version: str,
                   lock: Path = ROOT / "uv.lock") -> Bom:
    """The executable's SBOM from the source paths of everything PyInstaller collected."""
    paths = list(collected)
    dists = bundled_distributions(paths)
    locked = _locked_wheels(lock)
    owned = {Path(str(d.locate_file(f))).resolve() for d in dists for f in d.files or ()}
    prefix = Path(sys.base_prefix).resolve()
    # Shared libraries from the system: not in a distribution, not CPython's own.
    system = [p for p in _resolved(paths) if ".so" in p.name and p not in owned
              and not p.is_relative_to(prefix)]
    root = Component(type=ComponentType.APPLICATION, name=NAME, version=version,
                     bom_ref=f"{NAME}@{version}",
                     licenses=[LicenseFactory().make_from_string("MIT")])
    return _bom(root, [*(python_component(d, locked) for d in dists), _python_itself(),
                       _tailscaled_component(tailscaled), *system_packages(system)])


def image_bom(executable_sbom: bytes, system_files: Iterable[str | Path]) -> Bom:
    """The image's SBOM: the executable (with its SBOM's components) and the packages of the
    system files the image root holds."""
    inner = Bom.from_json(json.loads(executable_sbom))  # type: ignore[attr-defined]
    executable = inner.metadata.component
    version = executable.version
    root = Component(type=ComponentType.CONTAINER, name=NAME, version=version,
                     bom_ref=f"{NAME}-image@{version}",
                     licenses=[LicenseFactory().make_from_string("MIT")])
    known = {str(c.bom_ref) for c in inner.components}
    system = [c for c in system_packages(system_files) if str(c.bom_ref) not in known]
    return _bom(root, [executable, *inner.components, *system])


def write(bom: Bom, path: Path) -> int:
    """Write `bom` as validated CycloneDX 1.6 JSON; return its number of components."""
    text = JsonV1Dot6(bom).output_as_string(indent=2)
    error = JsonStrictValidator(SchemaVersion.V1_6).validate_str(text)
    if error is not None:
        reason = getattr(error.data, "message", error.data)
        raise SystemExit(f"build/sbom.py: the SBOM does not validate against CycloneDX 1.6: "
                         f"{reason}")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text + "\n")
    return len(bom.components)
