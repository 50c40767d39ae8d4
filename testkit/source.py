"""Parsing the project's own source in tests (the layering and size rules)."""

from __future__ import annotations

import ast
import gc
from pathlib import Path

__all__ = ["parse"]


def parse(path: Path) -> ast.Module:
    """`path`'s syntax tree, parsed with the cyclic GC held. On CPython 3.11.7 a finalizer that runs
    while the AST is being built (litellm's logging task, destroyed pending, logs a warning) makes
    `ast.parse` fail with "SystemError: AST constructor recursion depth mismatch"; the parse allocates
    enough to start a collection, and holding the GC keeps finalizers out of it."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        return ast.parse(path.read_text(encoding="utf-8"))
    finally:
        if was_enabled:
            gc.enable()
