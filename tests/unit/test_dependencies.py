"""The lock: uv itself pinned with hashes, and building the project with exactly that uv.

The lock's agreement with pyproject.toml is checked where it matters, by every install
(`uv sync --locked`; tests/e2e/build/test_make_demo.py shows a disagreeing one refused).
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[2]


def pinned_uv() -> tuple[str, list[str]]:
    text = (ROOT / "requirements-uv.txt").read_text()
    requirements = re.findall(r"^([A-Za-z0-9_.-]+)==(\S+)", text, flags=re.MULTILINE)
    assert [name for name, _ in requirements] == ["uv"], requirements
    return requirements[0][1], re.findall(r"--hash=sha256:([0-9a-f]{64})", text)


def test_uv_is_pinned_to_one_version_with_the_hashes_of_its_files() -> None:
    version, hashes = pinned_uv()
    assert re.fullmatch(r"\d+\.\d+\.\d+", version), version
    assert len(hashes) >= 2, "one hash per wheel and the sdist"


def test_the_pinned_uv_builds_the_project_itself() -> None:
    """uv builds a uv_build project in process only when its own version is in the
    build-system range; otherwise it would fetch some uv_build, unpinned, from the index."""
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    system = pyproject["build-system"]
    assert system["build-backend"] == "uv_build"
    (backend,) = (Requirement(r) for r in system["requires"])
    assert backend.name == "uv_build"
    version, _ = pinned_uv()
    assert backend.specifier.contains(version), (
        f"uv {version} (requirements-uv.txt) is outside pyproject.toml's {backend}: "
        "move the uv_build range with the uv pin")


def test_every_locked_package_from_the_index_has_hashes() -> None:
    lock = tomllib.loads((ROOT / "uv.lock").read_text())
    for package in lock["package"]:
        if "registry" not in package["source"]:
            assert package["name"] == "tailnet-agent", package["source"]  # the project itself
            continue
        files = package.get("wheels", []) + ([package["sdist"]] if "sdist" in package else [])
        assert files, package["name"]
        for file in files:
            assert re.fullmatch(r"sha256:[0-9a-f]{64}", file["hash"]), (package["name"], file)
