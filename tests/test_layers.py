"""The package's layers, bottom to top: no module imports from a layer above its own (docs/architecture.md).

Modules of one layer may import each other. Imports inside functions count too, except the few listed in
``DEFERRED`` with the reason they point upwards.
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
    ("camix.methods",),  # the method registry: steps, mask strategies, the StepContext builder
    ("camix.step", "camix.checkpoint", "camix.evaluate", "camix.predict", "camix.export", "camix.tensorboard"),
    ("camix.runs", "camix.tables", "camix.report", "camix.preflight", "camix.train_support", "camix.train_setup"),
    ("camix.train",),
    ("camix.study", "camix.demo"),
    ("camix.commands", "camix.cli", "camix.__main__"),
)
# (importer, imported): upward imports made inside a function on purpose
DEFERRED: dict[tuple[str, str], str] = {
    ("camix.validation", "camix.methods"): "the config's cross-checks read what the method registry says it needs",
}
ROOT = Path(camix.__file__).parent


def layer_of(module: str) -> int:
    """The index of the layer that holds ``module`` (a package's layer holds its submodules)."""
    for index, layer in enumerate(LAYERS):
        if any(module == name or module.startswith(name + ".") for name in layer):
            return index
    raise AssertionError(f"{module} is in no layer: add it to LAYERS (and to docs/architecture.md)")


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(tree: ast.Module) -> list[tuple[str, bool]]:
    """Every ``camix`` module imported in ``tree``, with whether the import is at module level."""
    top = {id(node) for node in tree.body}
    found: list[tuple[str, bool]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0 and node.module.startswith("camix"):
            names = [f"camix.{a.name}" for a in node.names] if node.module == "camix" else [node.module]
            found += [(name, id(node) in top) for name in names]
        elif isinstance(node, ast.Import):
            found += [(a.name, id(node) in top) for a in node.names if a.name.startswith("camix")]
    return found


def modules() -> list[tuple[str, Path]]:
    """Every module of the package but its (empty) root ``__init__``."""
    return [(module_name(path), path) for path in sorted(ROOT.rglob("*.py")) if path != ROOT / "__init__.py"]


def upward_imports(allowed: dict[tuple[str, str], str]) -> list[str]:
    """``importer imports imported`` for every import from a layer above the importer's."""
    bad = []
    for importer, path in modules():
        for imported, top_level in imports(ast.parse(path.read_text(encoding="utf-8"))):
            excused = not top_level and (importer, top_name(imported)) in allowed
            if layer_of(imported) > layer_of(importer) and not excused:
                bad.append(f"{importer} imports {imported}")
    return bad


def top_name(module: str) -> str:
    return ".".join(module.split(".")[:2])


def test_no_module_imports_from_a_layer_above_its_own() -> None:
    assert upward_imports(DEFERRED) == []
    # the one deferred upward import is real (an exception that excuses nothing would hide a future one)
    assert upward_imports({}) == ["camix.validation imports camix.methods"]


def test_every_module_is_in_a_layer_and_the_check_sees_a_violation() -> None:
    for name, _ in modules():
        layer_of(name)
    tree = ast.parse("import torch\nfrom camix.train import Trainer\n")
    assert imports(tree) == [("camix.train", True)]
    assert layer_of("camix.train") > layer_of("camix.functional.mixing")
    assert layer_of("camix.data.synthcity.writer") == layer_of("camix.data")
