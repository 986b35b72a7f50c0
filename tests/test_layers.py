"""The package's import structure: no import cycle anywhere in src/, and nothing imports from a higher layer.

Every import counts — at the top of a module or inside a function (a function-local import hides a cycle until the
function runs, it does not remove it); only imports under `if TYPE_CHECKING:` are left out of the cycle check (they
never run) but not out of the layer check. Importing `sleeptrain.a.b` also runs `sleeptrain/a/__init__.py`, so an
import from another package is an edge to that package's `__init__` as well.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = SRC / "sleeptrain"

# Lowest first. A module may import from its own layer's packages and from lower layers, never from a higher one.
# The README's "Concepts" states the same rule.
LAYERS = [
    {"__init__", "errors", "fsutil", "stats", "grids"},  # no sleeptrain imports but these
    {"config"},                                 # the schema: imports nothing it configures
    {"data"},                                   # corpus -> tokenizer -> token store -> samples
    {"sleep"},                                  # sleep ops, replay, controller (they see a narrow context only)
    {"presets"},                                # words and YAML -> Config (asks the sleep registries)
    {"evaluate"},                               # evaluation tasks and the `eval` harness
    {"lm"},                                     # models, the loop, train(): composes data, sleep and evaluate
    {"experiments", "export", "model_card", "integrations", "continual"},
    {"cli", "api", "__main__"},
]


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def top_package(name: str) -> str:
    parts = name.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def type_checking_lines(tree: ast.AST) -> set[int]:
    lines = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.body:
                lines.update(range(child.lineno, (child.end_lineno or child.lineno) + 1))
    return lines


def import_graph() -> tuple[set[str], dict[str, set[tuple[str, bool]]]]:
    """(modules, module -> {(imported module, runs at import or call time)}) over every sleeptrain import."""
    modules = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    edges: dict[str, set[tuple[str, bool]]] = defaultdict(set)
    for name, path in modules.items():
        tree = ast.parse(path.read_text())
        typing_only = type_checking_lines(tree)
        package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(anchor + ([node.module] if node.module else []))
                candidates = [f"{base}.{alias.name}" for alias in node.names] + [base]
            elif isinstance(node, ast.Import):
                candidates = [alias.name for alias in node.names]
            else:
                continue
            runs = node.lineno not in typing_only
            for target in candidates:
                if target not in modules or target == name:
                    continue
                edges[name].add((target, runs))
                # importing a.b.c from outside package a.b first runs a.b's __init__ (and a's)
                parts = target.split(".")
                for i in range(2, len(parts)):
                    parent = ".".join(parts[:i])
                    if not name.startswith(parent + ".") and name != parent:
                        edges[name].add((parent, runs))
    return set(modules), edges


def cycles(modules: set[str], edges: dict[str, set[tuple[str, bool]]]) -> list[list[str]]:
    """Strongly connected components of more than one module over the imports that run (Tarjan)."""
    runtime = {m: sorted(t for t, runs in edges.get(m, ()) if runs) for m in modules}
    index, low, stack, on_stack, found = {}, {}, [], set(), []
    counter = [0]
    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in runtime[v]:
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

    for module in sorted(modules):
        if module not in index:
            visit(module)
    return found


def is_package_init(module: str) -> bool:
    return (PACKAGE.parent / module.replace(".", "/") / "__init__.py").is_file()


def test_no_import_cycle_in_src():
    modules, edges = import_graph()
    # a package's __init__ importing its own modules is how a package is built, not a cycle: leave those edges out
    own = {m: {(t, r) for t, r in e if not (is_package_init(m) and t.startswith(m + "."))}
           for m, e in edges.items()}
    found = cycles(modules, own)
    assert not found, f"import cycles: {found}"


def test_nothing_imports_from_a_higher_layer():
    layer_of = {package: i for i, layer in enumerate(LAYERS) for package in layer}
    modules, edges = import_graph()
    unknown = sorted({top_package(m) for m in modules} - set(layer_of))
    assert not unknown, f"packages missing from LAYERS (give each a layer): {unknown}"
    upward = sorted(f"{m} -> {t}" for m, targets in edges.items() for t, _ in targets
                    if layer_of[top_package(t)] > layer_of[top_package(m)])
    assert not upward, "imports from a higher layer:\n" + "\n".join(upward)


def test_the_checks_see_a_cycle_and_an_upward_import(tmp_path, monkeypatch):
    """The walker finds what it is there to find: a function-local import closing a cycle, and an upward edge."""
    package = tmp_path / "sleeptrain"
    (package / "sleep").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "config.py").write_text("def f():\n    from sleeptrain.sleep.ops import X\n")
    (package / "sleep" / "__init__.py").write_text("")
    (package / "sleep" / "ops.py").write_text("from sleeptrain.config import f\nX = 1\n")
    monkeypatch.setattr(sys.modules[__name__], "SRC", tmp_path)
    monkeypatch.setattr(sys.modules[__name__], "PACKAGE", package)
    modules, edges = import_graph()
    assert cycles(modules, edges) == [["sleeptrain.config", "sleeptrain.sleep.ops"]]
    with pytest.raises(AssertionError, match="sleeptrain.config -> sleeptrain.sleep"):
        test_nothing_imports_from_a_higher_layer()


def test_importing_the_schema_loads_no_torch():
    code = "import sys, sleeptrain.config, sleeptrain.evaluate.config; print(sorted(m for m in ('torch', " \
           "'transformers', 'sleeptrain.sleep', 'sleeptrain.lm') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr
