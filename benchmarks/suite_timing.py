"""Do the tests that existed at a base commit run no slower now? (Issue 20: "the tests that exist
today run no slower than 10% over today"; the issue was filed at 83c120f.)

    python -m benchmarks.suite_timing [--base 83c120f] [--max-ratio 1.10] [--json PATH] [MODULE ...]

The base commit's tree is unpacked with `git archive` into a temporary folder (nothing in the
repository changes) and shares this checkout's `.venv`. The tests compared are the node ids both
trees collect, module by module: what existed at the base and still exists, whatever was added
since left out. Each module runs once on each tree, back to back, alternating which goes first, so
that a change in the machine's load falls on both sides alike. Reported: per module and in total,
pytest's wall-clock seconds on each side and the ratio now / base; exit 1 when the total ratio is
above --max-ratio or a side fails. MODULEs (test file paths) limit the run; without them every test
module both trees have runs, which is the whole old suite twice: run it on a quiet machine.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

__all__ = ["main"]

ROOT = Path(__file__).resolve().parent.parent


def _unpack(base: str, into: Path) -> None:
    archive = subprocess.run(["git", "archive", "--format=tar", base], cwd=ROOT, check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    (into / ".venv").symlink_to((ROOT / ".venv").resolve())


def _pytest(tree: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """pytest as that tree's own checkout runs it: from its folder, importing its code."""
    env = {**os.environ, "PYTHONPATH": str(tree)}
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args], cwd=tree, env=env,
                          capture_output=True, text=True)


def _modules(tree: Path) -> set[str]:
    return {str(p.relative_to(tree)) for p in (tree / "tests").rglob("test_*.py")}


def _collect(tree: Path, modules: list[str]) -> dict[str, list[str]]:
    """The node ids each module collects in `tree`."""
    found: dict[str, list[str]] = {}
    for line in _pytest(tree, "--collect-only", *modules).stdout.splitlines():
        if "::" in line:
            found.setdefault(line.split("::", 1)[0], []).append(line.strip())
    return found


def _timed(tree: Path, ids: list[str]) -> tuple[float, bool]:
    started = time.monotonic()
    done = _pytest(tree, *ids)
    return time.monotonic() - started, done.returncode == 0


def run(base: str, modules: list[str]) -> dict[str, object]:
    with tempfile.TemporaryDirectory(prefix="suite-timing-") as tmp:
        old = Path(tmp)
        _unpack(base, old)
        shared = sorted(_modules(old) & _modules(ROOT) & (set(modules) if modules else _modules(ROOT)))
        old_ids, new_ids = _collect(old, shared), _collect(ROOT, shared)
        rows: list[dict[str, object]] = []
        for n, module in enumerate(shared):
            ids = sorted(set(old_ids.get(module, [])) & set(new_ids.get(module, [])))
            if not ids:
                continue
            sides = [("base", old), ("now", ROOT)][:: 1 if n % 2 == 0 else -1]
            timed = {name: _timed(tree, ids) for name, tree in sides}
            rows.append({"module": module, "tests": len(ids), "base_s": round(timed["base"][0], 2), "now_s": round(timed["now"][0], 2),
                         "passed": timed["base"][1] and timed["now"][1]})
            print(f"{module:60s} {len(ids):4d} tests  base {timed['base'][0]:7.1f} s  now {timed['now'][0]:7.1f} s"
                  f"{'' if rows[-1]['passed'] else '  (a side failed)'}", flush=True)
    base_s = sum(float(str(r["base_s"])) for r in rows)
    now_s = sum(float(str(r["now_s"])) for r in rows)
    return {"base": base, "modules": rows, "tests": sum(int(str(r["tests"])) for r in rows), "base_s": round(base_s, 1),
            "now_s": round(now_s, 1), "ratio": round(now_s / base_s, 3) if base_s else None, "passed": all(r["passed"] for r in rows)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.suite_timing", description=__doc__.split("\n\n")[0])
    parser.add_argument("modules", nargs="*", help="test files to compare (default: every one both trees have)")
    parser.add_argument("--base", default="83c120f", help="the commit whose tests and timing are the reference")
    parser.add_argument("--max-ratio", type=float, default=1.10)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    result = run(args.base, args.modules)
    print(f"{result['tests']} tests: base {result['base_s']} s, now {result['now_s']} s, ratio {result['ratio']}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    ratio = result["ratio"]
    return 0 if result["passed"] and isinstance(ratio, float) and ratio <= args.max_ratio else 1


if __name__ == "__main__":
    sys.exit(main())
