"""The executable's SBOM: CycloneDX JSON made from what the build bundled, carried inside
the executable (and next to it), and what `version --verbose` prints from there."""

from __future__ import annotations

import json
import subprocess
import tomllib
from pathlib import Path

from tests.support.frozen import EXECUTABLE, REPO, executable, user_env


def bundled_sbom() -> dict[str, object]:
    from PyInstaller.archive.readers import CArchiveReader

    data = CArchiveReader(str(executable())).extract("tailnet-agent.cdx.json")
    assert data is not None, "the executable carries no SBOM"
    sbom: dict[str, object] = json.loads(data)
    return sbom


def components(sbom: dict[str, object]) -> list[dict[str, object]]:
    found = sbom["components"]
    assert isinstance(found, list)
    return found


def test_the_sbom_inside_is_cyclonedx_and_the_one_next_to_the_executable() -> None:
    sbom = bundled_sbom()
    assert (sbom["bomFormat"], sbom["specVersion"]) == ("CycloneDX", "1.6")
    beside = EXECUTABLE.with_name("tailnet-agent.cdx.json")
    assert json.loads(beside.read_text()) == sbom


def test_it_lists_the_locked_packages_that_were_bundled_and_nothing_else() -> None:
    lock = tomllib.loads((REPO / "uv.lock").read_text())
    locked = {p["name"]: p for p in lock["package"]}
    python = {str(c["name"]): c for c in components(bundled_sbom())
              if str(c.get("purl", "")).startswith("pkg:pypi/")}
    # What the agent runs on, each at the lock's version, with the hash of a locked wheel.
    for name in ("asyncssh", "cryptography", "bcrypt", "mcp", "uvicorn", "starlette",
                 "pydantic-core", "anthropic", "google-re2", "jc", "jmespath", "pyyaml"):
        assert name in python, sorted(python)
    for name, component in python.items():
        assert component["version"] == locked[name]["version"], name
        hashes = {f"sha256:{h['content']}" for h in component["hashes"]}  # type: ignore
        assert hashes and hashes <= {w["hash"] for w in locked[name]["wheels"]}, name
    # Not bundled: the test and build tools, what the spec excludes, and what only the test
    # tools bring (socksio: the tests' SOCKS5 for httpx2, which imports it when present).
    for name in ("pytest", "playwright", "mypy", "ruff", "hypothesis", "pyinstaller",
                 "cyclonedx-python-lib", "pygments", "socksio", "setuptools", "pip", "uv"):
        assert name not in python, name


def test_it_names_python_tailscaled_and_the_system_libraries_bundled() -> None:
    by_name = {str(c["name"]): c for c in components(bundled_sbom())}
    assert str(by_name["tailscaled"]["version"]).startswith("1.98.8")
    assert by_name["tailscaled"]["purl"] == "pkg:golang/tailscale.com/tailscale@v1.98.8"
    assert "cpython" in by_name
    assert any(str(c.get("purl", "")).startswith("pkg:deb/") and name == "libssl3"
               for name, c in by_name.items())


def test_version_verbose_lists_the_sbom(tmp_path: Path) -> None:
    done = subprocess.run([str(executable()), "version", "--verbose"], cwd=tmp_path,
                          env=user_env(tmp_path), capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    listed = [line.split() for line in done.stdout.splitlines() if line.startswith("  ")]
    expected = sorted(([str(c["name"]), str(c["version"])] for c in components(bundled_sbom())),
                      key=lambda pair: pair[0].lower())
    assert listed == expected, done.stdout
    assert f"SBOM inside this executable ({len(expected)} components)" in done.stdout
    assert done.stderr == ""
