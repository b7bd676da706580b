"""The packages' layering, read from the source: no import circle inside a package, and the split and the
kernels below the defenses."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import robustode

ROOT = Path(robustode.__file__).parent


def dotted(path: Path) -> str:
    """The module's dotted name: its folders up to the first one without an __init__.py."""
    parts = [] if path.name == "__init__.py" else [path.stem]
    folder = path.parent
    while (folder / "__init__.py").exists():
        parts.insert(0, folder.name)
        folder = folder.parent
    return ".".join(parts)


def _executed(tree: ast.AST):
    """The import statements a module can run: function-level ones too (they hide a circle, they do not
    break it), not those under ``if TYPE_CHECKING:``."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            continue
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        yield from _executed(node)


def imports(path: Path) -> set[str]:
    """The dotted names of the modules ``path`` imports, relative imports resolved; for ``from m import n``
    both m and m.n (which is a module when it names one)."""
    name = dotted(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in _executed(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
            continue
        base = package.rsplit(".", node.level - 1)[0] if node.level else ""
        module = ".".join(p for p in (base, node.module) if p)
        found.add(module)
        found.update(f"{module}.{alias.name}" for alias in node.names)
    return found


def cycle(package: Path) -> list[str] | None:
    """An import circle among the modules of ``package`` (a folder), as [a, b, ..., a], or None."""
    modules = {dotted(p): p for p in package.rglob("*.py")}
    return first_circle({m: set(imports(p) & modules.keys() - {m}) for m, p in modules.items()})


def first_circle(edges: dict[str, set[str]]) -> list[str] | None:
    """A circle in the graph ``edges`` (node -> nodes it imports), as [a, b, ..., a], or None."""
    state: dict[str, str] = {}  # "open" while on the path, "done" after

    def visit(node: str, path: list[str]) -> list[str] | None:
        state[node] = "open"
        for target in sorted(edges[node]):
            if state.get(target) == "open":
                return path[path.index(target):] + [target]
            if target not in state and (found := visit(target, path + [target])):
                return found
        state[node] = "done"
        return None

    return next((found for n in sorted(edges) if n not in state and (found := visit(n, [n]))), None)


@pytest.mark.parametrize("package", ["defenses", "split", "kernels"])
def test_no_import_cycle_in_defenses_and_split(package):
    assert cycle(ROOT / package) is None


def test_the_cycle_finder_sees_a_circle_through_a_function_level_import(tmp_path):
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "__init__.py").write_text("from .a import find\n")
    (package / "a.py").write_text("def find():\n    from .b import trace\n    return trace\n")
    (package / "b.py").write_text("from __future__ import annotations\n\nimport torch\n")
    assert cycle(package) is None
    (package / "b.py").write_text("from .a import ADVICE\n\n\ndef trace():\n    return ADVICE\n")
    assert cycle(package) == ["pkg.a", "pkg.b", "pkg.a"]


@pytest.mark.parametrize("package", ["split", "kernels"])
def test_the_split_and_the_kernels_sit_below_the_defenses(package):
    reach = {str(p.relative_to(ROOT)): sorted(i for i in imports(p) if i.startswith("robustode.defenses"))
             for p in (ROOT / package).rglob("*.py")}
    assert {p: found for p, found in reach.items() if found} == {}


def package_edges() -> dict[str, set[str]]:
    """Which of robustode's top-level packages and modules each one imports (itself left out)."""
    top = {p.stem if p.suffix else p.name for p in ROOT.iterdir() if p.suffix == ".py" or (p / "__init__.py").exists()}
    edges: dict[str, set[str]] = {name: set() for name in top}
    for path in ROOT.rglob("*.py"):
        source = dotted(path).split(".")
        if len(source) < 2:
            continue
        for target in imports(path):
            parts = target.split(".")
            if parts[0] == "robustode" and len(parts) > 1 and parts[1] in top and parts[1] != source[1]:
                edges[source[1]].add(parts[1])
    return edges


def test_no_import_circle_between_packages():
    edges = package_edges()
    assert "evaluation" in edges["training"] and "training" not in edges["evaluation"]  # the scan sees imports
    assert first_circle(edges) is None
    circle = first_circle({**edges, "evaluation": edges["evaluation"] | {"training"}})  # as it was before
    assert circle is not None and {"evaluation", "training"} <= set(circle)


def test_no_file_over_300_lines_and_no_function_over_50():
    too_long = []
    for path in ROOT.rglob("*.py"):
        source = path.read_text()
        if len(source.splitlines()) > 300:
            too_long.append(f"{path.relative_to(ROOT)}: {len(source.splitlines())} lines")
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno - node.lineno >= 50:
                too_long.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name}: "
                                f"{node.end_lineno - node.lineno + 1} lines")
    assert too_long == []
