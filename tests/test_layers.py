"""The package's layers, bottom to top: no module imports from a layer above its own, and no import circle
anywhere (docs/architecture.md).

Modules of one layer may import each other, but never in a circle. Every import counts: at module level, inside a
function, or under ``TYPE_CHECKING``.
"""

from __future__ import annotations

import ast
from pathlib import Path

import camix

LAYERS: tuple[tuple[str, ...], ...] = (
    ("camix.errors", "camix.labels", "camix.io", "camix.runtime"),  # ground floor: no camix imports but these
    ("camix.functional",),  # the paper's equations: pure tensor functions
    ("camix.config", "camix.config_tree", "camix.validation"),  # frozen dataclasses from YAML and their checks
    ("camix.data", "camix.models", "camix.augment", "camix.optim", "camix.visualize", "camix.runlock", "camix.rundir"),
    # the method registry and what a step works with: its context, the teacher's view, the mask strategies
    ("camix.methods", "camix.step_context", "camix.teacher", "camix.mixes", "camix.mic"),
    ("camix.step", "camix.checkpoint", "camix.evaluate", "camix.predict", "camix.export", "camix.tensorboard"),
    ("camix.runs", "camix.tables", "camix.report", "camix.preflight", "camix.train_setup"),
    ("camix.train",),
    ("camix.study", "camix.demo", "camix.smoke"),
    ("camix.commands", "camix.cli", "camix.__main__"),
)
ROOT = Path(camix.__file__).parent


def layer_of(module: str) -> int:
    """The index of the layer that holds ``module`` (a package's layer holds its submodules)."""
    for index, layer in enumerate(LAYERS):
        if any(module == name or module.startswith(name + ".") for name in layer):
            return index
    raise AssertionError(f"{module} is in no layer: add it to LAYERS (and to docs/architecture.md)")


def module_name(path: Path, root: Path = ROOT) -> str:
    parts = path.relative_to(root.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(tree: ast.Module, package: str = "camix", known: frozenset[str] = frozenset()) -> list[str]:
    """Every module of ``package`` imported anywhere in ``tree``: ``from a.b import c`` names ``a.b.c`` when that is
    a module (in ``known``; always for ``from camix import x``), else ``a.b``."""
    found: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0 and node.module.startswith(package):
            for alias in node.names:
                sub = f"{node.module}.{alias.name}"
                found.append(sub if sub in known or node.module == package else node.module)
        elif isinstance(node, ast.Import):
            found += [a.name for a in node.names if a.name.startswith(package)]
    return found


def modules(root: Path = ROOT) -> list[tuple[str, Path]]:
    """Every module of the package at ``root`` but its root ``__init__``."""
    return [(module_name(path, root), path) for path in sorted(root.rglob("*.py")) if path != root / "__init__.py"]


def import_graph(root: Path = ROOT) -> dict[str, set[str]]:
    """module -> the package's modules it imports (``import pkg.x.f`` of a name that is no module counts as
    ``pkg.x``)."""
    package = root.name
    known = frozenset(name for name, _ in modules(root))
    graph: dict[str, set[str]] = {}
    for name, path in modules(root):
        targets = imports(ast.parse(path.read_text(encoding="utf-8")), package, known)
        graph[name] = {t if t in known else t.rsplit(".", 1)[0] for t in targets} - {name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The import circles of ``graph``: its strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def upward_imports() -> list[str]:
    """``importer imports imported`` for every import from a layer above the importer's."""
    bad = []
    for importer, targets in import_graph().items():
        bad += [f"{importer} imports {t}" for t in sorted(targets) if layer_of(t) > layer_of(importer)]
    return bad


def top_name(module: str) -> str:
    return ".".join(module.split(".")[:2])


def test_no_module_imports_from_a_layer_above_its_own() -> None:
    assert upward_imports() == []


def test_no_import_circle_in_the_package() -> None:
    graph = import_graph()
    assert graph["camix.train"] >= {"camix.train_setup", "camix.preflight"}  # the graph is read, not empty
    assert cycles(graph) == []


def test_the_circle_check_finds_a_constructed_circle(tmp_path: Path) -> None:
    package = tmp_path / "pkg"
    (package / "sub").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "sub" / "__init__.py").write_text("")
    (package / "a.py").write_text("from pkg.b import g\n")
    (package / "b.py").write_text("def g() -> None:\n    from pkg.sub.c import h\n")  # inside a function
    (package / "sub" / "c.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import pkg.a\n")
    (package / "d.py").write_text("import pkg.a\nfrom pkg.sub import c\n")  # imports the circle, is not in it
    graph = import_graph(package)
    assert graph["pkg.a"] == {"pkg.b"} and graph["pkg.sub.c"] == {"pkg.a"} and graph["pkg.d"] == {"pkg.a", "pkg.sub.c"}
    assert cycles(graph) == [["pkg.a", "pkg.b", "pkg.sub.c"]]
    (package / "sub" / "c.py").write_text("import pkg.sub\n")  # no way back to a: no circle
    assert cycles(import_graph(package)) == []


def test_every_module_is_in_a_layer_and_the_check_sees_a_violation() -> None:
    for name, _ in modules():
        layer_of(name)
    tree = ast.parse("import torch\nfrom camix.train import Trainer\n")
    assert imports(tree) == ["camix.train"]
    assert layer_of("camix.train") > layer_of("camix.functional.mixing")
    assert layer_of("camix.data.synthcity.writer") == layer_of("camix.data")
