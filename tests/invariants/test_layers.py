"""Layers run downward only, and imports say so at the top of each module.

The contracts live in pyproject.toml ([tool.importlinter]); `make lint` runs them and so does this
test, so a change that imports upward, adds a cycle between sub-packages, or makes a service import
an adapter fails the suite with import-linter's explanation. Function-level imports used to hide
cycles; none is left (the manifest loads areas by name with importlib, which is not an import
statement and is its one loader).
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SRC = ROOT / "src" / "bookwarden"


def _ours(node: ast.AST) -> bool:
    """An import of this package's own modules. Heavy third-party packages needed by one path only
    (the embedded server, OpenDP) are still imported where used: startup cost, not cycles."""
    if isinstance(node, ast.Import):
        return any(alias.name.split(".")[0] == "bookwarden" for alias in node.names)
    return isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "bookwarden"


def _function_level_imports(path: Path) -> list[int]:
    tree = ast.parse(path.read_text())
    found = []
    for function in ast.walk(tree):
        if isinstance(function, ast.FunctionDef | ast.AsyncFunctionDef):
            found += [n.lineno for n in ast.walk(function) if _ours(n)]
    return found


def test_no_module_imports_inside_a_function():
    hidden = {
        str(path.relative_to(SRC)): lines
        for path in SRC.rglob("*.py")
        if "migrations" not in path.parts and (lines := _function_level_imports(path))
    }
    assert hidden == {}


def test_the_scan_sees_a_function_level_import(tmp_path):
    module = tmp_path / "m.py"
    module.write_text("def f():\n    import os\n    from bookwarden import areas\n    return os, areas\n")
    assert _function_level_imports(module) == [3]


def test_the_layer_contracts_hold():
    linter = Path(sys.executable).with_name("lint-imports")
    result = subprocess.run([str(linter), "--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-4000:]
    assert "4 kept, 0 broken" in result.stdout
