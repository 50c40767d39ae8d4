"""House rules for the proxy package that a reviewer would otherwise have to remember."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

from testkit.source import parse

PROXY = Path(__file__).resolve().parents[2] / "proxy"


def _tree(path: Path) -> ast.AST:
    return parse(path)


def test_only_the_config_module_reads_the_environment() -> None:
    offenders = []
    for path in PROXY.rglob("*.py"):
        if path.name == "config.py":
            continue
        for node in ast.walk(_tree(path)):
            if isinstance(node, ast.Attribute) and node.attr in ("environ", "getenv"):
                offenders.append(f"{path.name}:{node.lineno}")
            if isinstance(node, ast.ImportFrom) and node.module == "os" and any(a.name in ("environ", "getenv") for a in node.names):
                offenders.append(f"{path.name}:{node.lineno}")
    assert offenders == []


def test_no_mutable_module_globals_or_global_statements() -> None:
    for path in PROXY.rglob("*.py"):
        tree = _tree(path)
        assert not [n for n in ast.walk(tree) if isinstance(n, ast.Global)], path.name
        for node in tree.body:  # type: ignore[attr-defined]
            if isinstance(node, ast.Assign) and isinstance(node.value, (ast.List, ast.Dict, ast.Set)):
                names = [t.id for t in node.targets if isinstance(t, ast.Name)]
                assert names == ["__all__"], f"{path.name}: mutable module global {names}"


def test_imports_inside_functions_only_for_start_up_cost_and_litellm_set_up() -> None:
    found = []
    for path in PROXY.rglob("*.py"):
        for fn in (n for n in ast.walk(_tree(path)) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))):
            if any(isinstance(n, (ast.Import, ast.ImportFrom)) for n in ast.walk(fn)):
                found.append(f"{path.relative_to(PROXY).as_posix()}:{fn.name}")
    assert sorted(found) == ["chat/upstream.py:load_litellm", "cli/main.py:_serve"]


def test_importing_the_app_has_no_side_effects_until_it_starts() -> None:
    # A fresh interpreter: litellm is imported, and the environment written, only by the app's
    # start-up (`Upstream.start`, in a worker thread), never by importing the package or building `Upstream`.
    code = (
        "import asyncio, os, sys\n"
        "import proxy.app, proxy.chat.upstream\n"
        "print('litellm' in sys.modules, os.environ.get('LITELLM_LOCAL_MODEL_COST_MAP'))\n"
        "from proxy.config import UpstreamsConfig\n"
        "upstream = proxy.chat.upstream.Upstream(UpstreamsConfig())\n"
        "print('litellm' in sys.modules)\n"
        "litellm = asyncio.run(upstream.litellm())\n"
        "print('litellm' in sys.modules, os.environ.get('LITELLM_LOCAL_MODEL_COST_MAP'), litellm.suppress_debug_info)\n"
    )
    env = {"PYTHONPATH": str(PROXY.parent)}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env, cwd=PROXY.parent)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.split("\n")[:3] == ["False None", "False", "True True True"]


def test_modules_stay_small() -> None:
    sizes = {p.relative_to(PROXY).as_posix(): len(p.read_text().splitlines()) for p in PROXY.rglob("*.py")}
    assert {k: v for k, v in sizes.items() if v >= 400} == {}
