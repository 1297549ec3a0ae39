"""The shape of the source tree: imports run one way, nothing imports itself round a cycle,
and no module grows past what a reader takes in at one sitting.

Layers, lowest first; a module may import from a lower layer or from its own package:

    0  agent.errors                      the shared exceptions (a leaf)
    1  agent.envfile, agent.logs              .env files; log records and console lines
    2  agent.hosts.inventory                        the SSH hosts
    3  agent.settings                         every setting, one table
    4  agent.core                             identity, policy, audit, limits, service
    5  agent.ssh, agent.web                   (neither knows the other)
    6  agent.mcp, agent.tailnet.node, agent.tailnet.fleet
    7  agent.chat
    8  agent.app                              composes service, MCP server and HTTP app
    9  agent.commands
   10  agent.cli

`whitelist` and `tailscale_userspace` import nothing from the agent or each other, and
agent.core imports no web, SSH or LLM library.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("agent", "whitelist", "tailscale_userspace")

LAYERS: dict[str, int] = {
    "agent.errors": 0,
    "agent.envfile": 1, "agent.logs": 1,
    "agent.hosts.inventory": 2,
    "agent.settings": 3,
    "agent.core": 4,
    "agent.ssh": 5, "agent.web": 5,
    "agent.mcp": 6, "agent.tailnet.node": 6, "agent.tailnet.fleet": 6,
    "agent.chat": 7,
    "agent.app": 8,
    "agent.commands": 9,
    "agent.cli": 10,
    "agent": 0,  # agent/__init__.py: only __version__
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
            # `from agent.core import errors` imports the submodule agent.errors
            found += [Import(name, f"{target}.{alias.name}", node.lineno) for alias in node.names]
    return found


def layer_of(module: str) -> tuple[int, str] | None:
    """(layer, package) of an agent module, by its longest listed prefix."""
    best = max((k for k in LAYERS if module == k or module.startswith(k + ".")),
               key=len, default=None)
    return None if best is None else (LAYERS[best], best)


def layering_problems(imports: Iterable[Import], known: set[str]) -> list[str]:
    problems: list[str] = []
    for imp in imports:
        if imp.target not in known:
            top = imp.target.split(".")[0]
            if imp.importer.startswith("agent.core") and top in CORE_MUST_NOT_IMPORT:
                problems.append(f"{imp.importer}:{imp.line} imports {imp.target}: agent.core "
                                "must not depend on web, SSH or LLM libraries")
            continue
        src_top, dst_top = imp.importer.split(".")[0], imp.target.split(".")[0]
        if src_top != "agent" and dst_top != src_top:
            problems.append(f"{imp.importer}:{imp.line} imports {imp.target}: {src_top} must "
                            "not depend on other packages of this project")
            continue
        if src_top != "agent" or dst_top != "agent":
            continue
        src, dst = layer_of(imp.importer), layer_of(imp.target)
        assert src is not None and dst is not None
        same_package = src[1] == dst[1] or imp.target.startswith(src[1] + ".")
        if not same_package and dst[0] >= src[0]:
            problems.append(f"{imp.importer}:{imp.line} imports {imp.target}: layer {src[0]} "
                            f"({src[1]}) may only import lower layers, not layer {dst[0]} "
                            f"({dst[1]})")
    return problems


def cycles(graph: Mapping[str, set[str]]) -> list[list[str]]:
    """Every import cycle found by a depth-first search (each reported once)."""
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


def test_imports_follow_the_layers() -> None:
    imports, graph = project_graph()
    assert not layering_problems(imports, set(graph)), "\n".join(
        layering_problems(imports, set(graph)))


def test_no_import_cycles() -> None:
    _, graph = project_graph()
    # A package's __init__ importing its own submodules is not a cycle a reader trips on,
    # but a submodule importing its package's __init__ back is.
    assert not cycles(graph), cycles(graph)


def test_the_checks_catch_what_they_are_for() -> None:
    known = {"agent.access.policy", "agent.web.asgi", "agent.ssh.pool", "whitelist.model"}
    bad = [
        Import("agent.access.policy", "agent.web.asgi", 3),  # upward
        Import("agent.ssh.pool", "agent.web.asgi", 4),  # sideways, same layer
        Import("whitelist.model", "agent.access.policy", 5),  # out of the leaf package
        Import("agent.access.policy", "starlette.requests", 6),  # a web library in core
    ]
    assert len(layering_problems(bad, known)) == 4
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == [["a", "b", "c", "a"]]
    assert layering_problems([Import("agent.web.asgi", "agent.access.policy", 1)], known) == []
