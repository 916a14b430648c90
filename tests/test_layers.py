"""The package's imports run one way: each layer imports only from the layers above it."""

import ast
from pathlib import Path

import ufo_nas

LAYERS = [
    {"errors", "formats", "fileio", "paths"},
    {"spec", "space", "cost"},
    {"supernet", "onnx_io", "graph_cache", "checkpoint"},
    {"backends", "hardware"},
    {"data", "accuracy", "cvpr22", "evaluate", "verification"},
    {"latency"},
    {"search", "plot"},
    {"train"},
    {"export"},
    {"cli", "__main__", "__init__"},
]


def imports_by_unit() -> dict[str, set[str]]:
    root = Path(ufo_nas.__file__).parent
    found: dict[str, set[str]] = {}
    for path in root.rglob("*.py"):
        unit = path.relative_to(root).with_suffix("").parts[0]
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("ufo_nas."):
                found.setdefault(unit, set()).add(node.module.split(".")[1])
    return found


def test_every_unit_has_a_layer():
    units = {p.with_suffix("").name for p in Path(ufo_nas.__file__).parent.iterdir()}
    units -= {"__pycache__"}
    assert units <= set().union(*LAYERS)


def test_no_import_runs_back_up_the_layers():
    level = {unit: i for i, layer in enumerate(LAYERS) for unit in layer}
    upward = [
        f"{unit} imports {other}"
        for unit, others in imports_by_unit().items()
        for other in others
        if level[other] > level[unit]
    ]
    assert not upward
