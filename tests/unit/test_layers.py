"""The package's layers, read from its source: no import cycle and no import of a layer above.

Every `import`/`from ... import` of a minidisc module counts, at module level or inside a
function (a lazy import is still a dependency); only the `if __name__ == "__main__":` block of a
module is left out: it is the command line, run as `__main__`, not the module others import.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from conftest import ROOT

PACKAGE = ROOT / "minidisc"

# Lowest first: a module may import its own layer (without a cycle) and the ones below it.
LAYERS: tuple[tuple[str, ...], ...] = (
    # tables and plain helpers, no torch
    ("minidisc", "minidisc.errors", "minidisc.files", "minidisc.registry", "minidisc.metrics"),
    ("minidisc.data",),
    ("minidisc.models",),
    # the device, processes and sharding a model runs on: compression uses it (copy_model)
    ("minidisc.training.runtime",),
    ("minidisc.compression",),
    # the typed run configuration reads the task table and the student specs
    ("minidisc.config",),
    ("minidisc.training",),
    ("minidisc.modes",),
    # tools over checkpoints and finished runs
    ("minidisc.predict", "minidisc.export", "minidisc.report", "minidisc.convert",
     "minidisc.card"),
    # the command lines: run.py's, and those that drive it (the demo, sweeps, run folders)
    ("minidisc.cli", "minidisc.main", "minidisc.demo", "minidisc.sweep", "minidisc.run_dir"),
)


def module_name(path: Path, root: Path = PACKAGE.parent) -> str:
    parts = path.relative_to(root).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def layer(module: str) -> int:
    """The layer of the longest matching prefix (minidisc.training.runtime before
    minidisc.training)."""
    best, rank = -1, None
    for i, names in enumerate(LAYERS):
        for name in names:
            if (module == name or module.startswith(name + ".")) and len(name) > best:
                best, rank = len(name), i
    if rank is None:
        raise AssertionError(f"{module} is in no layer: add it to LAYERS")
    return rank


def _is_main_guard(node: ast.stmt) -> bool:
    return (isinstance(node, ast.If) and isinstance(node.test, ast.Compare)
            and isinstance(node.test.left, ast.Name) and node.test.left.id == "__name__")


def imports(path: Path, modules: set[str], root: Path = PACKAGE.parent) -> set[str]:
    """The package modules `path` imports (a `from pkg import name` of a submodule counts
    as that submodule)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    me = module_name(path, root)
    package = me if path.name == "__init__.py" else me.rpartition(".")[0]
    nodes = [n for top in tree.body if not _is_main_guard(top) for n in ast.walk(top)]
    found: set[str] = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            found.add(base)
            found.update(f"{base}.{a.name}" for a in node.names)
    # a module's import of its own package __init__ is how Python loads it, not a dependency
    return {m for m in found if m in modules and m != me and not me.startswith(m + ".")}


def graph() -> dict[str, set[str]]:
    paths = sorted(PACKAGE.rglob("*.py"))
    modules = {module_name(p) for p in paths}
    return {module_name(p): imports(p, modules) for p in paths}


def test_every_module_has_a_layer():
    for module in graph():
        layer(module)


def test_no_module_imports_a_layer_above_it():
    upward = sorted(f"{m} -> {d}" for m, deps in graph().items() for d in deps
                    if layer(d) > layer(m))
    assert upward == [], "imports of a layer above (see LAYERS)"


def test_no_import_cycle():
    deps = graph()
    state: dict[str, str] = {}
    cycles = []

    def visit(module: str, path: list[str]) -> None:
        state[module] = "open"
        for d in sorted(deps[module]):
            if state.get(d) == "open":
                cycles.append(" -> ".join([*path[path.index(d):], d]))
            elif d not in state:
                visit(d, [*path, d])
        state[module] = "done"

    for module in sorted(deps):
        if module not in state:
            visit(module, [module])
    assert cycles == []


@pytest.mark.parametrize("source, expected", [
    ("import minidisc.data.tasks\n", {"minidisc.data.tasks"}),
    ("def f():\n    from minidisc.cli import parse_args\n", {"minidisc.cli"}),
    ("from . import pipeline\n", {"minidisc.data.pipeline"}),
    ("from .tasks import Task\nimport json\n", {"minidisc.data.tasks"}),
    ("if __name__ == '__main__':\n    from minidisc.main import main\n", set()),
])
def test_imports_are_read_at_module_and_function_level(tmp_path, source, expected):
    path = tmp_path / "minidisc" / "data" / "probe.py"
    path.parent.mkdir(parents=True)
    path.write_text(source, encoding="utf-8")
    modules = {"minidisc", "minidisc.data", "minidisc.data.tasks", "minidisc.data.pipeline",
               "minidisc.cli", "minidisc.main"}
    assert imports(path, modules, tmp_path) == expected


def test_layers_are_ordered_by_the_longest_prefix():
    order = ["minidisc.errors", "minidisc.data.tasks", "minidisc.models.families",
             "minidisc.training.runtime", "minidisc.compression.losses", "minidisc.config",
             "minidisc.training.loop", "minidisc.modes.minidisc", "minidisc.predict",
             "minidisc.main"]
    assert [layer(m) for m in order] == sorted(layer(m) for m in order)
    assert len({layer(m) for m in order}) == len(order)
