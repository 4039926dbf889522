# SPDX-License-Identifier: MIT
"""The package's import graph: no cycle between modules and no import from a lower
package to a higher one. Every ``import`` counts, including those inside functions and
under ``TYPE_CHECKING``: a lazy import is still a dependency."""

from __future__ import annotations

import ast
from pathlib import Path

import thoughtgrad

ROOT = Path(thoughtgrad.__file__).parent

LAYERS: tuple[tuple[str, ...], ...] = (
    ("", "errors"),
    ("config", "runs", "distributed"),
    ("tasks", "models"),
    ("spectra", "train", "evaluate"),
    ("dynamics",),
    ("report",),
    ("experiments",),
    ("cli", "__main__"),
)
"""The allowed order, lowest first (``""`` is the top-level ``thoughtgrad`` module). A
package may import its own level (without a cycle) and every level below it."""

LEVEL = {pkg: i for i, names in enumerate(LAYERS) for pkg in names}


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def package_of(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def import_graph() -> dict[str, set[str]]:
    """Module -> the thoughtgrad modules it imports (``from a import b`` counts ``a.b``
    when ``a.b`` is a module)."""
    modules = {module_name(p): p for p in ROOT.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        deps: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            else:
                continue
            deps |= {t for t in targets if t in modules and t != name}
        graph[name] = deps
    return graph


def test_every_package_has_a_level() -> None:
    packages = {package_of(m) for m in import_graph()}
    assert packages <= set(LEVEL), f"packages without a level in LAYERS: {packages - set(LEVEL)}"


def test_no_upward_import() -> None:
    upward = [f"{a} -> {b}" for a, deps in import_graph().items() for b in deps
              if LEVEL[package_of(b)] > LEVEL[package_of(a)]]
    assert not upward, "imports from a lower package to a higher one:\n" + "\n".join(upward)


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` as a path that returns to its start, or None."""
    state: dict[str, int] = {}  # 1 on the current path, 2 finished
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for dep in sorted(graph.get(node, ())):
            if state.get(dep) == 1:
                return path[path.index(dep):] + [dep]
            if dep not in state and (found := visit(dep)):
                return found
        state[node] = 2
        path.pop()
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_find_cycle_finds_one() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_module_cycle() -> None:
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_no_package_cycle() -> None:
    graph = import_graph()
    packages: dict[str, set[str]] = {}
    for a, deps in graph.items():
        packages.setdefault(package_of(a), set()).update(
            package_of(b) for b in deps if package_of(b) != package_of(a))
    cycle = find_cycle(packages)
    assert cycle is None, "package cycle: " + " -> ".join(cycle or [])
