"""Dependencies run one way: phasezoo → dashboard → analysis → data; only the dashboard imports Streamlit.

`phasezoo` (the command) is the top layer: it may dispatch to every layer, and nothing in the project imports
it. No module fixes up `sys.path` (the project is installed), and no two modules import each other at load
time, directly or round a longer loop.
"""
import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import ROOT

PACKAGES = ("analysis", "data", "dashboard", "phasezoo")
FORBIDDEN = {"data": {"analysis", "dashboard", "phasezoo", "streamlit", "plotly"},
             "analysis": {"dashboard", "phasezoo", "streamlit", "plotly"},
             "dashboard": {"phasezoo"}}


def imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def sources(package: str) -> list[Path]:
    return [f for f in (ROOT / package).rglob("*.py") if "zoos" not in f.relative_to(ROOT).parts]


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_layering(package):
    files = sources(package)
    assert files
    for f in files:
        bad = imports(f) & FORBIDDEN[package]
        assert not bad, f"{f.relative_to(ROOT)} imports {bad}"


def test_views_do_not_import_torch_at_top():
    for f in (ROOT / "dashboard").rglob("*.py"):
        assert "torch" not in imports(f), f"{f.relative_to(ROOT)} imports torch (slow UI start)"


def test_no_sys_path_hacks():
    for f in (f for p in PACKAGES for f in sources(p)):
        assert "sys.path.insert" not in f.read_text(), (
            f"{f.relative_to(ROOT)} edits sys.path: the project is installed (pyproject.toml), import it")


def _load_time_imports(body: list[ast.stmt]) -> Iterator[ast.Import | ast.ImportFrom]:
    """The import statements that run when a module is loaded: at top level and in class bodies, `if`, `try`
    and `with` blocks, not in functions (deferred on purpose) nor under `if TYPE_CHECKING:`."""
    for node in body:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        elif isinstance(node, ast.If):
            if not (isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING"):
                yield from _load_time_imports(node.body)
            yield from _load_time_imports(node.orelse)
        elif isinstance(node, (ast.Try, ast.TryStar)):
            for block in (node.body, *(h.body for h in node.handlers), node.orelse, node.finalbody):
                yield from _load_time_imports(block)
        elif isinstance(node, (ast.With, ast.ClassDef)):
            yield from _load_time_imports(node.body)


def import_graph() -> dict[str, set[str]]:
    """Project module → the project modules it imports at load time (`from p import m` counts as p.m when m is
    a module of p, else as p)."""
    files = {}
    for f in (f for p in PACKAGES for f in sources(p)):
        parts = f.relative_to(ROOT).with_suffix("").parts
        files[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = f
    graph = {}
    for name, f in files.items():
        deps = set()
        for node in _load_time_imports(ast.parse(f.read_text()).body):
            if isinstance(node, ast.Import):
                deps |= {a.name for a in node.names}
            elif node.module and node.level == 0:
                deps |= {f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in files else node.module
                         for a in node.names}
        graph[name] = {d for d in deps if d in files and d != name}
    return graph


def find_cycles(graph: dict[str, set[str]]) -> list[str]:
    """One "a → b → a" line per back edge of a depth-first search (none: the graph is acyclic)."""
    state, cycles = {}, []  # state 1: on the current path, 2: done

    def visit(module: str, path: list[str]) -> None:
        state[module] = 1
        for dep in sorted(graph[module]):
            if state.get(dep) == 1:
                cycles.append(" → ".join(path[path.index(dep):] + [dep]))
            elif dep not in state:
                visit(dep, path + [dep])
        state[module] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    return cycles


def test_find_cycles():
    assert find_cycles({"a": {"b"}, "b": {"c"}, "c": set()}) == []
    assert find_cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a → b → c → a"]


def test_no_import_cycle():
    graph = import_graph()
    assert "analysis.metrics.registry" in graph["analysis.metrics.definitions"]  # the graph sees `from p import m`
    cycles = find_cycles(graph)
    assert not cycles, "import cycles (move the import into the function that needs it, or the shared code " \
        "into a module both import): " + "; ".join(cycles)
