"""The package's layers: a module imports only from its own folder or from folders of lower layers."""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "asd_ganomaly"
LAYERS = {"core": 0, "data": 1, "evaluation": 2, "models": 3, "runs": 4, "results": 5, "inference": 5, "": 6}
"""Folder -> layer (``""``: the top-level entry points train.py, cli.py and stack.py)."""


def _modules() -> dict[str, Path]:
    return {".".join(p.relative_to(PACKAGE).with_suffix("").parts): p for p in PACKAGE.rglob("*.py")}


def _folder(module: str) -> str:
    """The subpackage a module belongs to (``""`` for the top level)."""
    parts = module.split(".")
    return parts[0] if len(parts) > 1 else ""


def _imports(module: str, path: Path) -> set[str]:
    """The package modules that ``module`` imports, as dotted names below asd_ganomaly."""
    package = module.split(".")[:-1]  # "runs.files" and "runs.__init__" both live in runs/
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - (node.level - 1)]
                target = [*base, *(node.module.split(".") if node.module else [])]
            elif node.module and node.module.startswith("asd_ganomaly"):
                target = node.module.split(".")[1:]
            else:
                continue
            names = [".".join([*target, alias.name]) for alias in node.names]
            found |= {n for n in names if n in _modules()} or {".".join(target)}
        elif isinstance(node, ast.Import):
            found |= {a.name.removeprefix("asd_ganomaly.") for a in node.names if a.name.startswith("asd_ganomaly.")}
    return {m for m in found if m and m != "__init__"}


MODULES = _modules()


def test_every_folder_has_a_layer():
    assert {_folder(m) for m in MODULES} <= set(LAYERS), sorted({_folder(m) for m in MODULES} - set(LAYERS))
    assert len(MODULES) > 30


@pytest.mark.parametrize("module", sorted(MODULES))
def test_no_import_runs_up_a_layer(module):
    imports = _imports(module, MODULES[module])
    assert all(i in MODULES or i.split(".")[0] in LAYERS for i in imports), imports
    up = {i for i in imports if LAYERS[_folder(i)] > LAYERS[_folder(module)]}
    assert not up, f"{module} imports from a higher layer: {sorted(up)}"
    if _folder(module):
        assert not {i for i in imports if _folder(i) == ""}, f"{module} imports a top-level entry point"


def test_the_import_graph_has_no_cycle():
    graph = {m: {i for i in _imports(m, p) if i in MODULES} for m, p in MODULES.items()}
    state: dict[str, int] = {}

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in graph[node]:
            assert state.get(nxt) != 1, f"import cycle: {' -> '.join([*path, node, nxt])}"
            if nxt not in state:
                visit(nxt, [*path, node])
        state[node] = 2

    for module in graph:
        if module not in state:
            visit(module, [])
