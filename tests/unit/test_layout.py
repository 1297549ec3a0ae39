"""The shape of the source tree: which package may import which, no cycles, and no package
reaching into another concept's private modules.

A package is `agent.<name>` (a directory or a single module) or one of the other top-level
packages. `DEPENDS` declares, for each, the packages it may import; the declared graph has
no cycle, and neither has the graph of modules. `FACES` declares, for each concept, the
modules other packages may import (its face); every other module of it is its own business.
A package or concept module not declared here fails the test: placing it is a decision.

Imports under `if TYPE_CHECKING:` are annotations, never run, and are not counted. Tests may
import anything.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("agent", "whitelist", "tailscale_userspace")

# Lowest first. Each line: the package, and what it may import.
DEPENDS: dict[str, set[str]] = {
    "whitelist": set(),  # the command catalog: a leaf, usable without the agent
    "tailscale_userspace": set(),  # driving tailscaled: a leaf
    "agent": set(),  # agent/__init__.py: __version__ only
    "agent.errors": set(),  # the shared exceptions
    "agent.logs": set(),
    "agent.envfile": {"agent.errors"},
    "agent.access": {"agent.errors", "whitelist"},  # identity, grants, policy
    "agent.hosts": {"agent.errors", "agent.envfile", "whitelist"},
    "agent.settings": {"agent.errors", "agent.envfile", "agent.hosts"},
    "agent.fanout": {"agent.errors", "whitelist"},  # strategy, outcomes, groups, view
    "agent.output": {"agent.errors", "agent.access", "whitelist"},
    "agent.audit": {"agent.errors", "agent.access", "agent.output"},
    "agent.core": {"agent.errors", "agent.access", "agent.hosts", "agent.settings",
                   "agent.fanout", "agent.output", "agent.audit", "whitelist"},
    "agent.ssh": {"agent.errors", "agent.hosts", "agent.output", "whitelist",
                  "tailscale_userspace"},
    "agent.tailnet": {"agent.errors", "agent.logs", "agent.hosts", "agent.settings",
                      "agent.ssh", "tailscale_userspace"},
    "agent.web": {"agent", "agent.errors", "agent.logs", "agent.access", "agent.settings",
                  "agent.audit", "agent.core"},
    "agent.mcp": {"agent", "agent.errors", "agent.access", "agent.hosts", "agent.fanout",
                  "agent.output", "agent.audit", "agent.core", "agent.web", "whitelist"},
    "agent.chat": {"agent.errors", "agent.access", "agent.hosts", "agent.settings",
                   "agent.fanout", "agent.output", "agent.audit", "agent.core", "agent.web",
                   "agent.mcp", "whitelist"},
    "agent.app": {"agent.errors", "agent.hosts", "agent.settings", "agent.core", "agent.ssh",
                  "agent.tailnet", "agent.web", "agent.mcp", "agent.chat", "whitelist"},
    "agent.commands": {"agent", "agent.errors", "agent.logs", "agent.access", "agent.hosts",
                       "agent.settings", "agent.fanout", "agent.output", "agent.audit",
                       "agent.core", "agent.ssh", "agent.tailnet", "agent.web", "agent.mcp",
                       "agent.chat", "agent.app", "tailscale_userspace", "whitelist"},
    "agent.cli": {"agent", "agent.errors", "agent.logs", "agent.settings", "agent.commands",
                  "tailscale_userspace", "whitelist"},
}

# A concept's face: the modules of it that other packages may import (the package itself,
# i.e. its __init__, is always part of its face). Packages not listed here are not concepts
# with a private inside (the commands, the CLI, single modules).
FACES: dict[str, set[str]] = {
    "agent.access": {"identity", "grants", "policy"},
    "agent.hosts": {"inventory", "registry", "query"},
    "agent.tailnet": {"node", "fleet"},
    "agent.output": {"results", "spool", "live", "store", "redact", "parsing"},
    "agent.audit": {"writer", "reader", "shape", "chain", "ship", "syslog", "verify",
                    "recorder", "casts"},
    "agent.fanout": {"strategy", "host_outcome", "hostlist", "view", "row_filter"},
    "agent.core": {"service", "prepare", "approvals", "fanout_run", "metrics", "readiness"},
    "agent.ssh": set(),  # everything through agent/ssh/__init__.py
    "agent.web": {"asgi", "server", "unix_socket", "mcp_sessions", "prometheus",
                  "middleware.host_origin", "middleware.identity"},
    "agent.mcp": {"confirm", "context", "progress", "runbooks", "tools"},
    "agent.chat": set(),  # chat_routes, from agent/chat/__init__.py
}
CORE_MUST_NOT_IMPORT = ("starlette", "uvicorn", "asyncssh", "mcp", "anthropic", "httpx",
                        "jinja2")


@dataclass(frozen=True)
class Import:
    importer: str
    target: str  # a dotted module name, as written or resolved from a relative import
    line: int


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def package_of(module: str) -> str:
    parts = module.split(".")
    return ".".join(parts[:2]) if parts[0] == "agent" else parts[0]


def source_files() -> list[Path]:
    return sorted(p for package in PACKAGES for p in (ROOT / package).rglob("*.py"))


def _runtime_nodes(tree: ast.AST) -> Iterator[ast.AST]:
    """Every node except those under `if TYPE_CHECKING:` (annotations only, never run)."""
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            stack.extend(node.orelse)
            continue
        yield node
        stack.extend(ast.iter_child_nodes(node))


def imports_of(path: Path) -> list[Import]:
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: list[Import] = []
    for node in _runtime_nodes(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [Import(name, alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            if node.module is not None:  # `from . import x` loads only x from here
                found.append(Import(name, target, node.lineno))
            # `from agent.audit import casts` imports the submodule agent.audit.casts
            found += [Import(name, f"{target}.{alias.name}", node.lineno) for alias in node.names]
    return found


def problems_of(imports: Iterable[Import], known: set[str],
                depends: Mapping[str, set[str]] = DEPENDS,
                faces: Mapping[str, set[str]] = FACES) -> list[str]:
    """Every import that breaks the declared graph or reaches into a concept's inside."""
    problems: list[str] = []
    for imp in imports:
        src = package_of(imp.importer)
        if imp.target not in known:
            top = imp.target.split(".")[0]
            if src == "agent.core" and top in CORE_MUST_NOT_IMPORT:
                problems.append(f"{imp.importer}:{imp.line} imports {imp.target}: agent.core "
                                "must not depend on web, SSH or LLM libraries")
            continue
        dst = package_of(imp.target)
        if src == dst:
            continue
        if src not in depends:
            problems.append(f"{imp.importer}: package {src} is not declared in DEPENDS")
            continue
        if dst not in depends[src]:
            problems.append(f"{imp.importer}:{imp.line} imports {imp.target}: {src} may not "
                            f"import {dst} (DEPENDS)")
            continue
        if dst in faces and imp.target != dst:
            inner = imp.target[len(dst) + 1:]
            if not any(inner == f or inner.startswith(f + ".") for f in faces[dst]):
                problems.append(f"{imp.importer}:{imp.line} imports {imp.target}: a private "
                                f"module of {dst} (its face: {sorted(faces[dst]) or '__init__'})")
    return problems


def cycles(graph: Mapping[str, Iterable[str]]) -> list[list[str]]:
    """Every cycle found by a depth-first search (each reported once)."""
    found: list[list[str]] = []
    state: dict[str, int] = {}  # 1: on the stack, 2: done
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                found.append([*stack[stack.index(nxt):], nxt])
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)
    return found


def project_graph() -> tuple[list[Import], dict[str, set[str]]]:
    files = source_files()
    known = {module_name(p) for p in files}
    imports = [imp for p in files for imp in imports_of(p)]
    graph: dict[str, set[str]] = {name: set() for name in known}
    for imp in imports:
        if imp.target in known and imp.target != imp.importer:
            graph[imp.importer].add(imp.target)
    return imports, graph


def undeclared(known: Iterable[str], depends: Mapping[str, set[str]] = DEPENDS) -> list[str]:
    """Packages the tree has and DEPENDS does not place."""
    missing = sorted({package_of(m) for m in known} - set(depends))
    return [f"package {p} is not declared in DEPENDS" for p in missing]


def test_every_package_is_placed() -> None:
    _, graph = project_graph()
    assert not undeclared(graph), "\n".join(undeclared(graph))


def test_imports_follow_the_declared_graph() -> None:
    imports, graph = project_graph()
    assert not problems_of(imports, set(graph)), "\n".join(problems_of(imports, set(graph)))


def test_the_declared_graph_has_no_cycle() -> None:
    assert not cycles(DEPENDS), cycles(DEPENDS)


def test_no_import_cycles() -> None:
    _, graph = project_graph()
    # A package's __init__ importing its own submodules is not a cycle a reader trips on,
    # but a submodule importing its package's __init__ back is.
    assert not cycles(graph), cycles(graph)


def test_the_checks_catch_what_they_are_for() -> None:
    known = {"agent.access.policy", "agent.web.asgi", "agent.ssh", "agent.ssh.pool",
             "agent.core.service", "whitelist.model", "agent.audit.follow", "agent.new.thing"}
    depends = {"agent.access": {"whitelist"}, "agent.ssh": set(), "whitelist": set(),
               "agent.web": {"agent.access", "agent.audit", "agent.ssh"},
               "agent.core": set(), "agent.audit": set()}
    faces = {"agent.audit": {"writer"}, "agent.ssh": set()}
    bad = [
        Import("agent.access.policy", "agent.web.asgi", 3),  # not declared
        Import("agent.ssh.pool", "agent.web.asgi", 4),  # sideways, not declared
        Import("whitelist.model", "agent.access.policy", 5),  # out of the leaf package
        Import("agent.core.service", "starlette.requests", 6),  # a web library in core
        Import("agent.web.asgi", "agent.audit.follow", 7),  # a private module
        Import("agent.web.asgi", "agent.ssh.pool", 8),  # behind the package's __init__
        Import("agent.new.thing", "agent.ssh", 9),  # a package nobody placed
    ]
    assert len(problems_of(bad, known, depends, faces)) == len(bad)
    good = [Import("agent.web.asgi", "agent.access.policy", 1),
            Import("agent.web.asgi", "agent.ssh", 2),
            Import("agent.ssh.pool", "agent.ssh", 3)]
    assert problems_of(good, known, depends, faces) == []
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == [["a", "b", "c", "a"]]
    assert undeclared(known, depends) == ["package agent.new is not declared in DEPENDS"]
