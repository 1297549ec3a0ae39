"""Every repository path the README names exists, so moving a module cannot leave the manual
pointing at a file that is gone.

Checked: any word that starts with one of the repository's top-level folders or files
(`agent/web/server.py`, `sh build/tailscaled.sh DIR`, `tests/e2e/hostile/`), relative links
(`[..](build/README.md)`), modules run with `python -m`, and the table of `agent/`'s folders
(its first column is relative to `agent/`, the modules it names live in that folder).
Generated paths (matched by .gitignore, e.g. `node_modules/`) are not in a checkout and are
skipped.
"""

from __future__ import annotations

import fnmatch
import re
from pathlib import Path, PurePosixPath

import pytest

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"


def _ignored_patterns() -> list[str]:
    lines = (ROOT / ".gitignore").read_text().splitlines()
    return [line.strip().rstrip("/") for line in lines if line.strip() and not line.startswith("#")]


IGNORED = _ignored_patterns()


def _generated(path: str) -> bool:
    parts = PurePosixPath(path).parts
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    return any(fnmatch.fnmatch(name, pattern)
               for pattern in IGNORED for name in (*parts, *prefixes))


def _top_level() -> list[str]:
    return sorted(p.name for p in ROOT.iterdir() if not _generated(p.name) and p.name != ".git")


def named_paths(text: str) -> set[str]:
    """Words in `text` that start with a top-level folder or file of the repository."""
    names = "|".join(re.escape(name) for name in _top_level())
    word = re.compile(rf"(?<![\w./<$~-])((?:{names})(?:/[\w.@-]*)*)(?![\w<])")
    found = {m.group(1).rstrip(".,:;") for m in word.finditer(text)}
    # A bare folder name is a word in a sentence ("the tests"); a bare file name is a path.
    found = {f for f in found if "/" in f or (ROOT / f).is_file()}
    links = re.findall(r"\]\((?!https?:|mailto:|#)([^)#\s]+)", text)
    return (found | set(links)) - {""}


def named_modules(text: str) -> set[str]:
    return set(re.findall(r"python -m ([\w.]+)", text))


def agent_table_rows(text: str) -> list[tuple[str, list[str]]]:
    """(first column, modules named in the second) for each row of the `agent/` table."""
    table = text.split("Inside `agent/`", 1)[1].split("\n\n", 2)[1]
    rows = []
    for line in table.splitlines()[2:]:
        cells = line.strip("|").split("|")
        rows.append((cells[0], re.findall(r"`([\w/]+)`", "|".join(cells[1:]))))
    return rows


def test_the_checks_find_what_they_look_for() -> None:
    # The extractors themselves: a check that finds nothing passes on anything.
    text = ("See `agent/web/server.py`, run `sh build/tailscaled.sh DIR` or "
            "`python -m tests.bench.run`; [guide](build/README.md), "
            "`tests/e2e/chat/node_modules`, no `DIR/agent/x.py`, `bench-results/<x>.json`.")
    assert named_paths(text) == {"agent/web/server.py", "build/tailscaled.sh",
                                 "build/README.md", "tests/e2e/chat/node_modules"}
    assert _generated("tests/e2e/chat/node_modules")
    assert not _generated("agent/web/server.py")
    assert named_modules(text) == {"tests.bench.run"}
    readme = README.read_text()
    assert len(named_paths(readme)) > 20
    assert len(agent_table_rows(readme)) >= 8


@pytest.mark.parametrize("path", sorted(named_paths(README.read_text())))
def test_every_path_the_readme_names_exists(path: str) -> None:
    if _generated(path):
        return
    assert (ROOT / path).exists(), f"README.md names {path}, which is not in the repository"


@pytest.mark.parametrize("module", sorted(named_modules(README.read_text())))
def test_every_module_the_readme_runs_exists(module: str) -> None:
    base = ROOT.joinpath(*module.split("."))
    assert base.with_suffix(".py").exists() or (base / "__init__.py").exists(), (
        f"README.md runs `python -m {module}`, which is not in the repository")


def test_the_agent_table_names_modules_that_exist() -> None:
    agent = ROOT / "agent"
    missing = []
    for first, modules in agent_table_rows(README.read_text()):
        for where in re.findall(r"`([^`]+)`", first):
            path = agent / where
            if not path.exists():
                missing.append(f"agent/{where}")
                continue
            if path.is_dir():
                present = {p.stem for p in path.rglob("*.py")} | {
                    p.name for p in path.rglob("*") if p.is_dir()}
                missing += [f"agent/{where}{m}" for m in modules if m.rstrip("/") not in present]
    assert not missing, f"README.md's table of agent/ names what is not there: {missing}"
