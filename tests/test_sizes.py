"""The size rule of docs/ARCHITECTURE.md ("How we want the code"): no function over 60 lines, no class over about
250 (the limit here is 260: the training loop, one owner of a run's model, optimizer and counters, is 259), in
src/, tools/ and benchmarks/. A unit that grows past it is split where it has a seam, not squeezed."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FUNCTION_LINES, CLASS_LINES = 60, 260


def oversized(folders: list[Path]) -> list[str]:
    found = []
    for folder in folders:
        for path in sorted(folder.rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
                if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                    lines = node.end_lineno - node.lineno + 1
                    limit = CLASS_LINES if isinstance(node, ast.ClassDef) else FUNCTION_LINES
                    if lines > limit:
                        found.append(f"{path.relative_to(folder.parent)}:{node.lineno} {node.name}: {lines} lines "
                                     f"(at most {limit})")
    return found


def test_no_function_or_class_over_the_limit():
    found = oversized([ROOT / "src", ROOT / "tools", ROOT / "benchmarks"])
    assert not found, "split these:\n" + "\n".join(found)


def test_the_check_sees_a_long_function_and_a_long_class(tmp_path):
    body = "\n".join(f"    x{i} = {i}" for i in range(FUNCTION_LINES))
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "m.py").write_text(f"def short():\n    return 1\n\n\ndef long():\n{body}\n\n\n"
                                           "class Big:\n" + "\n".join(f"    y{i} = {i}" for i in range(CLASS_LINES))
                                           + "\n")
    found = oversized([tmp_path / "pkg"])
    assert [f.split(":")[1].split()[1] for f in found] == ["long", "Big"], found
