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
    edges = {m: sorted(imports(p) & modules.keys() - {m}) for m, p in modules.items()}
    state: dict[str, str] = {}  # "open" while on the path, "done" after

    def visit(module: str, path: list[str]) -> list[str] | None:
        state[module] = "open"
        for target in edges[module]:
            if state.get(target) == "open":
                return path[path.index(target):] + [target]
            if target not in state and (found := visit(target, path + [target])):
                return found
        state[module] = "done"
        return None

    return next((found for m in sorted(modules) if m not in state and (found := visit(m, [m]))), None)


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
