"""Node.js clients for the test-suite: the official `openai` npm package, installed by
`scripts/dev.py` into `.venv/node` (never by hand), run with `node` against loopback URLs only."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

from .processes import REPO_ROOT, clean_env

__all__ = ["NODE_MODULES", "run_node"]

NODE_MODULES = REPO_ROOT / ".venv" / "node" / "node_modules"


def run_node(script: Path, *args: str, env: dict[str, str] | None = None, timeout_s: float = 120.0) -> list[dict[str, Any]]:
    """Run `script` with the project's Node packages on NODE_PATH; returns the JSON lines it
    printed. Raises with its stderr when it fails (a missing `node` or package fails loudly: the
    set-up installs them)."""
    node = shutil.which("node")
    if node is None or not (NODE_MODULES / "openai").is_dir():
        raise RuntimeError("node or the npm `openai` package is missing: run `python3 scripts/dev.py setup`")
    full_env = {**clean_env(), "NODE_PATH": str(NODE_MODULES), **(env or {})}
    done = subprocess.run([node, str(script), *args], capture_output=True, text=True, timeout=timeout_s, env=full_env,
                          cwd=os.fspath(REPO_ROOT))
    if done.returncode != 0:
        raise RuntimeError(f"{script.name} failed ({done.returncode}): {done.stderr[-2000:]}")
    return [json.loads(line) for line in done.stdout.splitlines() if line.strip().startswith("{")]
