"""No import cycles among ``conjugate``'s modules, nor among its top-level subpackages and modules.

The graph is read from the source with :mod:`ast`, so it holds every import: module-level ones and those inside
functions (imported lazily, they still make the importing module depend on the imported one). ``from X import
name`` is an edge to ``X.name`` when that is a module, else to ``X``. Importing ``X.a`` also runs the package
``X/__init__.py``, but that implicit edge is left out: a package that imports its own submodules would
otherwise always be a cycle.
"""

from __future__ import annotations

import ast
from pathlib import Path

import conjugate

ROOT = Path(conjugate.__file__).parent
PACKAGE = "conjugate"


def module_names() -> dict[str, Path]:
    """``{"conjugate.synthetic.study": path, "conjugate.lm": path/to/__init__.py, ...}``."""
    out = {}
    for path in sorted(ROOT.rglob("*.py")):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join([PACKAGE, *parts])] = path
    return out


def resolve(module: str, is_package: bool, node: ast.ImportFrom) -> str:
    """The absolute name ``from <node.module>`` refers to, inside ``module``."""
    if not node.level:
        return node.module or ""
    base = module.split(".")
    if not is_package:
        base = base[:-1]
    if node.level > 1:
        base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def import_graph() -> dict[str, set[str]]:
    """Each ``conjugate`` module → the ``conjugate`` modules it imports anywhere in its source."""
    modules = module_names()
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for module, path in modules.items():
        is_package = path.name == "__init__.py"
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = resolve(module, is_package, node)
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
            for target in targets:
                # ``import conjugate.a.b`` names a module; anything deeper (an attribute) counts as its module
                while target and target not in modules:
                    target = target.rpartition(".")[0]
                if target.startswith(PACKAGE) and target != module:
                    graph[module].add(target)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one node (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0

    def visit(v: str) -> None:
        nonlocal counter
        index[v] = low[v] = counter
        counter += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(found)


def top_level(module: str) -> str:
    """``conjugate.lm.harmful.study`` → ``conjugate.lm``; ``conjugate`` stays ``conjugate``."""
    return ".".join(module.split(".")[:2])


def test_the_graph_sees_lazy_imports_and_relative_ones() -> None:
    graph = import_graph()
    assert "conjugate.runs" in graph["conjugate.synthetic.study"]  # from ..runs import ...
    assert "conjugate.synthetic.tasks" in graph["conjugate.synthetic.study"]  # from . import tasks
    assert "conjugate.synthetic.study" in graph["conjugate.commands.synthetic"]  # inside a function
    assert "conjugate.aggregate" in graph["conjugate.sweep"]  # inside a function


def test_cycle_detection_finds_a_planted_cycle() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_cycle_among_modules() -> None:
    assert cycles(import_graph()) == []


def test_no_cycle_among_top_level_subpackages() -> None:
    graph: dict[str, set[str]] = {}
    for module, targets in import_graph().items():
        graph.setdefault(top_level(module), set()).update(top_level(t) for t in targets)
    for node, targets in graph.items():
        targets.discard(node)
    assert cycles(graph) == []
