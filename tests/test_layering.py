"""Data flows proxy -> memory only: memory never imports the HTTP layer or litellm."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FORBIDDEN = {"proxy", "starlette", "uvicorn", "litellm", "httpx"}


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def test_memory_does_not_import_the_http_layer():
    offenders = {p.name: _imports(p) & FORBIDDEN for p in (ROOT / "memory").rglob("*.py")}
    assert {k: v for k, v in offenders.items() if v} == {}


# Imports inside a function only for optional dependencies, never to dodge a cycle:
# storage._postgres imports the PostgreSQL modules (psycopg, the `postgres` extra) only when asked for.
LAZY_IMPORTS = {"storage.py:_postgres"}


def test_no_imports_inside_functions_in_memory():
    found = set()
    for path in (ROOT / "memory").rglob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for fn in (n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))):
            if any(isinstance(n, (ast.Import, ast.ImportFrom)) for n in ast.walk(fn)):
                found.add(f"{path.name}:{fn.name}")
    assert found == LAZY_IMPORTS
