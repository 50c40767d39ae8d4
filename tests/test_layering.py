"""Which part of the repository may import which, checked by parsing every module.

    proxy ──> memory            memory never imports proxy, starlette, uvicorn, litellm or httpx,
                                nor reaches into their files (no string naming them outside
                                docstrings: no find_spec("litellm"), no path into its folder)
    tests ──> testkit <── benchmarks
                                tests never import benchmarks (except tests/benchmarks/, which tests
                                the benchmark code itself); benchmarks never import tests; testkit
                                imports neither; memory and proxy import none of the three
    test servers                only testkit/ starts a server in process (imports uvicorn)

Imports count whether written as `import`, `from`, or as a module name given to `python -m` or
`importlib.import_module` (a string literal naming a module), so a layer cannot be crossed by path.
"""

from __future__ import annotations

import ast
import fnmatch
import re
import tomllib
from pathlib import Path

from testkit.source import parse

ROOT = Path(__file__).resolve().parents[1]
HTTP_LAYER = {"proxy", "starlette", "uvicorn", "litellm", "httpx"}
TEST_HOMES = {"tests", "testkit", "benchmarks"}
# A string literal that names one of our top-level packages' modules, e.g. "benchmarks.stress".
MODULE_NAME = re.compile(r"^(tests|testkit|benchmarks|proxy|memory)(\.[A-Za-z_]\w*)+$")


def _modules(folder: str) -> list[Path]:
    return sorted((ROOT / folder).rglob("*.py"))


def _imports(path: Path) -> set[str]:
    """Top-level package names `path` imports, by statement or by module-name string."""
    names: set[str] = set()
    for node in ast.walk(parse(path)):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and MODULE_NAME.match(node.value):
            names.add(node.value.split(".")[0])
    return names


def _named_in_strings(path: Path, names: set[str]) -> set[str]:
    """Which of `names` appear in a string literal of `path` that is not a docstring."""
    tree = parse(path)
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
        and node.body and isinstance(node.body[0], ast.Expr) and isinstance(node.body[0].value, ast.Constant)
    }
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
            found.update(name for name in names if re.search(rf"\b{name}\b", node.value))
    return found


def _offenders(folder: str, forbidden: set[str], skip: str | None = None) -> dict[str, set[str]]:
    found = {}
    for path in _modules(folder):
        rel = path.relative_to(ROOT).as_posix()
        if skip and rel.startswith(skip):
            continue
        if hits := _imports(path) & forbidden:
            found[rel] = hits
    return found


def test_memory_does_not_import_the_http_layer_or_test_code() -> None:
    assert _offenders("memory", HTTP_LAYER | TEST_HOMES) == {}


def test_memory_does_not_reach_into_the_http_layer_by_path() -> None:
    names = HTTP_LAYER - {"proxy"}  # "proxy" is an ordinary word in messages
    found = {p.relative_to(ROOT).as_posix(): hits for p in _modules("memory") if (hits := _named_in_strings(p, names))}
    assert found == {}


def test_proxy_does_not_import_test_code() -> None:
    assert _offenders("proxy", TEST_HOMES) == {}


def test_benchmarks_never_import_tests() -> None:
    assert _offenders("benchmarks", {"tests"}) == {}


def test_tests_never_import_benchmarks_except_the_tests_of_the_benchmarks() -> None:
    assert _offenders("tests", {"benchmarks"}, skip="tests/benchmarks/") == {}


def test_testkit_imports_neither_tests_nor_benchmarks() -> None:
    assert _offenders("testkit", {"tests", "benchmarks"}) == {}


def test_only_testkit_serves_test_servers() -> None:
    assert _offenders("tests", {"uvicorn"}) == {}
    assert _offenders("benchmarks", {"uvicorn"}) == {}


def test_the_checker_sees_every_way_of_naming_a_module(tmp_path: Path) -> None:
    probe = tmp_path / "probe.py"
    probe.write_text('"""Docs may name litellm."""\nimport tests.x\nfrom benchmarks import y\ncmd = ["python", "-m", "testkit.upstream_server"]\n'
                     'from . import z\nspec = find_spec("litellm")\n')
    assert _imports(probe) == {"tests", "benchmarks", "testkit"}
    assert _named_in_strings(probe, {"litellm", "httpx"}) == {"litellm"}


def test_the_wheel_ships_only_memory_and_proxy() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    include = config["tool"]["setuptools"]["packages"]["find"]["include"]
    top_level = [p.name for p in ROOT.iterdir() if (p / "__init__.py").exists()]
    shipped = {name for name in top_level if any(fnmatch.fnmatch(name, pattern) for pattern in include)}
    assert {"memory", "proxy"} <= shipped
    assert shipped.isdisjoint(TEST_HOMES)


def test_imports_inside_functions_in_memory_only_for_optional_backends() -> None:
    """Lazy imports of optional extras, never to dodge a cycle: the embedding backend (fastembed,
    `embed`) and the PostgreSQL store (psycopg, `postgres`), each loaded only when asked for."""
    found = []
    for path in _modules("memory"):
        tree = parse(path)
        for fn in (n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))):
            if any(isinstance(n, (ast.Import, ast.ImportFrom)) for n in ast.walk(fn)):
                found.append(f"{path.name}:{fn.name}")
    assert sorted(found) == ["embeddings.py:_text_embedding", "open.py:_postgres"]


def _import_graph(root: Path, packages: tuple[str, ...]) -> dict[str, set[str]]:
    """Module -> the modules of `packages` it imports (anywhere in it, relative imports resolved;
    `from a import b` counts a.b when that is a module, else a)."""
    files = {p: ".".join(p.relative_to(root).with_suffix("").parts) for pkg in packages for p in sorted((root / pkg).rglob("*.py"))}
    names = {p: n.removesuffix(".__init__") for p, n in files.items()}
    known = set(names.values())

    def module(name: str) -> str | None:
        while name and name not in known:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, set[str]] = {}
    for path, name in names.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        found: set[str | None] = set()
        for node in ast.walk(parse(path)):
            if isinstance(node, ast.Import):
                found.update(module(alias.name) for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] if node.level else [])
                base = ".".join(part for part in (base, node.module or "") if part)
                found.update(f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else module(base) for alias in node.names)
        graph[name] = {m for m in found if m is not None and m != name}
    return graph


def _circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The groups of modules that import each other, directly or through others."""
    reach = {m: set(deps) for m, deps in graph.items()}
    for middle in graph:  # transitive closure (a few hundred modules: fast enough)
        for m in graph:
            if middle in reach[m]:
                reach[m] |= reach[middle]
    return sorted({tuple(sorted(n for n in graph if n in reach[m] and m in reach[n])) for m in graph if m in reach[m]})


def test_no_import_circles_in_memory_or_proxy() -> None:
    assert _circles(_import_graph(ROOT, ("memory", "proxy"))) == []


def test_the_circle_check_finds_a_circle(tmp_path: Path) -> None:
    (tmp_path / "pkg" / "sub").mkdir(parents=True)
    for name, text in {"__init__.py": "", "a.py": "from pkg.sub import b\n", "c.py": "import pkg.a\n", "sub/__init__.py": "",
                       "sub/b.py": "from .. import c\n"}.items():
        (tmp_path / "pkg" / name).write_text(text)
    assert _circles(_import_graph(tmp_path, ("pkg",))) == [("pkg.a", "pkg.c", "pkg.sub.b")]
