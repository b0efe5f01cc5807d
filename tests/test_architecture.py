"""The package layout is the architecture: subpackages import only those below them.

Every ``import`` in the package (module level and inside functions) is read with ``ast``;
an edge from one unit (a subpackage or a top-level module) to another must go down the
declared layer order, which also makes any import cycle between subpackages a failure.
"""
import ast
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

PKG = Path(__file__).resolve().parents[1] / "sparsenu"

#: Bottom to top. A unit may import units that stand before it.
LAYERS = ["errors", "config", "keys", "sparse", "sim", "augment", "data", "models", "losses", "train", "eval",
          "cli", "__main__"]


def _unit(module: str) -> str | None:
    parts = module.split(".")
    if parts[0] != "sparsenu" or len(parts) < 2:
        return None
    return parts[1]


def _import_edges() -> dict[tuple[str, str], list[str]]:
    edges: dict[tuple[str, str], list[str]] = defaultdict(list)
    for f in PKG.rglob("*.py"):
        rel = f.relative_to(PKG.parent).with_suffix("")
        src = _unit(".".join(rel.parts))
        if src in (None, "__init__"):
            continue  # the package facade (sparsenu/__init__.py) re-exports from the top
        for node in ast.walk(ast.parse(f.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                targets = [node.module]
            else:
                continue
            for t in targets:
                dst = _unit(t)
                if dst is not None and dst != src:
                    edges[(src, dst)].append(f"{f.relative_to(PKG.parent)}:{node.lineno}")
    return edges


def test_every_unit_is_in_the_layer_order():
    units = {p.stem if p.is_file() else p.name for p in PKG.iterdir()
             if (p.suffix == ".py" or (p.is_dir() and (p / "__init__.py").exists())) and p.stem != "__init__"}
    assert units - set(LAYERS) == set(), "add new subpackages to LAYERS"


def test_imports_only_go_down_the_layers():
    order = {u: i for i, u in enumerate(LAYERS)}
    upward = [f"{src} -> {dst} ({where[0]})" for (src, dst), where in _import_edges().items()
              if order[dst] >= order[src]]
    assert upward == [], "imports against the layer order:\n" + "\n".join(upward)


def test_no_cycle_between_units():
    graph: dict[str, set[str]] = defaultdict(set)
    for src, dst in _import_edges():
        graph[src].add(dst)
    state: dict[str, int] = {}

    def visit(u: str, path: list[str]) -> None:
        state[u] = 1
        for v in graph[u]:
            assert state.get(v) != 1, f"import cycle: {' -> '.join(path + [u, v])}"
            if v not in state:
                visit(v, path + [u])
        state[u] = 2

    for u in list(graph):
        if u not in state:
            visit(u, [])


def test_config_layer_imports_no_subpackage_and_no_torch():
    code = ("import sys, sparsenu.config; "
            "print(sorted(m for m in sys.modules if m == 'torch' or m.startswith(('sparsenu.sim', 'sparsenu.augment'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "[]"


def test_eval_uses_only_the_public_training_api():
    """eval works on arrays and checkpoints: from ``sparsenu.train`` it may use the names the
    package exports (train, load_checkpoint, ...) and its config types, never trainer internals."""
    import sparsenu.train as T

    bad = []
    for f in (PKG / "eval").rglob("*.py"):
        for node in ast.walk(ast.parse(f.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("sparsenu.train"):
                if node.module == "sparsenu.train":
                    bad += [f"{f.name}: {a.name}" for a in node.names if a.name not in T.__all__]
                elif node.module != "sparsenu.train.config":
                    bad.append(f"{f.name}: {node.module}")
    assert bad == []
