"""`doctor`'s list of packages is what the agent really imports and installs."""

from __future__ import annotations

import ast
import sys
import tomllib
from pathlib import Path

from agent.commands.doctor import DEPENDENCIES

ROOT = Path(__file__).resolve().parents[4]
# Distribution name on PyPI -> the name it is imported by.
IMPORT_NAMES = {"pyyaml": "yaml", "python-socks": "python_socks", "markdown-it-py": "markdown_it",
                "google-re2": "re2"}


def third_party_imports() -> set[str]:
    ours = {"agent", "whitelist", "tailscale_userspace"}
    found: set[str] = set()
    for package in ours:
        for path in (ROOT / package).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Import):
                    found |= {alias.name.split(".")[0] for alias in node.names}
                elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                    found.add(node.module.split(".")[0])
    return {name for name in found - ours if name not in sys.stdlib_module_names}


def declared() -> set[str]:
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())
    names = set()
    for requirement in data["project"]["dependencies"]:
        dist = requirement.split(">")[0].split("<")[0].split("=")[0].split("[")[0].strip()
        names.add(IMPORT_NAMES.get(dist.lower(), dist.lower().replace("-", "_")))
    return names


def test_doctor_checks_every_package_the_agent_imports() -> None:
    # mcp_types ships with mcp; bcrypt is imported by asyncssh for encrypted keys.
    imported = third_party_imports() - {"mcp_types"}
    assert imported <= set(DEPENDENCIES), imported - set(DEPENDENCIES)


def test_doctor_checks_what_pyproject_installs() -> None:
    # bcrypt comes with asyncssh's `bcrypt` extra.
    assert set(DEPENDENCIES) == declared() | {"bcrypt"}
