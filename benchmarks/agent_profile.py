"""The proxy's own CPU time per agent step, and what it forwarded (issues 18 and 23).

    python -m benchmarks.agent_profile --only pvlib --budget 8000 --out /tmp/run.json
    python -m benchmarks.agent_profile --only pvlib --budget 8000 --out /tmp/run.json --py-spy /tmp/run.txt
    python -m benchmarks.agent_profile --compare /tmp/before.json /tmp/after.json

Replays the agent trajectories (`agent_traces`) as section H does (before step i the agent sends
`messages[:i]` with the `bash` tool, `X-Memory-Session` and `X-Memory-Budget`; the strict fake
answers with the recorded step i) through a `memory-runtime serve` process, one request at a
time, and reads the process's CPU time (every thread's, from /proc/PID/task/*/schedstat, in
nanoseconds) right before each request, right after its answer and right before the next one:
*request* CPU is what the proxy spent while the agent waited, *after* CPU what it spent between
the answer and the next request (background embedding). On a shared, loaded machine wall-clock
latency measures the neighbours as much as the proxy; CPU time does not (Linux only).

`--py-spy FILE` samples the proxy with py-spy (idle threads left out) into collapsed stacks, then
prints the share of samples under each phase of the request path. `--out` keeps, per step, the
CPU times and the sha256 of the message list the fake received, so `--compare` can say whether
two runs forwarded the same prompts byte for byte and how the CPU times moved.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx

from testkit.harness import serve_upstream
from testkit.processes import await_litellm, start_proxy_process
from testkit.upstream import FakeUpstream

from .agent_replay import PROXY_KEY, TOOLS, reply_of
from .agent_traces import DEFAULT_TRACES, load_trajectories
from .common import MODEL
from .corpus import REPO_ROOT

__all__ = ["main", "process_cpu_ns", "PHASES"]

# Phases of the proxy's work, by a function a sample passes through: the first phase (in this order)
# whose marker is in the sample's stack names it. Samples of threads waiting (the event loop's
# select, an idle worker thread, aiosqlite's queue) are not CPU time and are left out.
PHASES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("embedding model (background)", ("FastEmbedder.embed",)),
    ("token counting", ("TiktokenCounter.count", "encode_ordinary")),
    ("compaction: excerpts", ("excerpt_message", "candidates (memory/turn/excerpts")),
    ("compaction", ("compact_tail", "compacted_tail")),
    ("alignment", ("align_request", "classify_fixed", "in_formula_of")),
    ("hashing", ("Request.of", "MessageMemo.hash", "message_hash")),
    ("layout", ("build_plan", "build_layout", "needs_memory", "fixed_over_budget")),
    ("ingest of the new messages (commit)", ("Session._write",)),
    ("commit (other)", ("commit_turn",)),
    ("prepare (other)", ("prepare_turn", "turn_inputs")),
    ("upstream call (litellm)", ("Upstream.complete", "litellm/")),
    ("parsing and limits", ("parse_chat_request", "check_limits", "read_body")),
    ("store (aiosqlite thread)", ("aiosqlite",)),
)
IDLE = ("EpollSelector.select", "_worker (concurrent/futures/thread.py:81)", "_connection_worker_thread (aiosqlite/core.py:59)",
        "_write_to_self")


def process_cpu_ns(pid: int) -> int:
    """CPU time of every live thread of `pid`, in nanoseconds (/proc/PID/task/*/schedstat)."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            total += int((task / "schedstat").read_text().split()[0])
        except (FileNotFoundError, ProcessLookupError, IndexError, ValueError):
            continue  # the thread ended meanwhile
    return total


def _digest(value: Any, size: int = 64) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, ensure_ascii=False).encode("utf-8")).hexdigest()[:size]


def _received(body: dict[str, Any]) -> dict[str, Any]:
    """What the fake received, for `--compare`: a digest of the message list (as before), of every
    top-level field, and of each message (keys sorted: JSON spacing and key order do not count)."""
    messages = body.get("messages") or []
    return {"forwarded": _digest(messages), "fields": {k: _digest(v, 16) for k, v in body.items()},
            "message_digests": [_digest(m, 16) for m in messages]}


def replay(only: list[str], budget: int, traces: Path, steps: int | None, embedding_model: str | None,
           py_spy: Path | None) -> dict[str, Any]:
    trajectories = [t for t in load_trajectories(traces) if any(w in t.name for w in only)] if traces.is_dir() else []
    if not trajectories:
        raise SystemExit(f"no trajectory matching {only} under {traces} (pass --agent-traces PATH)")
    last: dict[str, Any] | None = None
    records: list[dict[str, Any]] = []
    upstream = serve_upstream(FakeUpstream(keep_requests=True))
    spy: subprocess.Popen[bytes] | None = None
    with tempfile.TemporaryDirectory(prefix="agent-profile-") as tmp:
        proxy = start_proxy_process(Path(tmp), upstream.url, embedding_model=embedding_model, deadline_s=300.0)
        pid = proxy.process.pid
        try:
            with httpx.Client(timeout=300.0) as http:
                warm = {"model": MODEL, "messages": [{"role": "user", "content": "warm-up"}], "tools": TOOLS}
                upstream.fake.enqueue(reply_of({"role": "assistant", "content": "ready"}))
                http.post(proxy.url + "/v1/chat/completions", json=warm,
                          headers={"Authorization": f"Bearer {PROXY_KEY}", "X-Memory-Session": "profile-warm-up"}).raise_for_status()
                await_litellm(http, proxy.url, PROXY_KEY)
                upstream.fake.take_requests()
                if py_spy is not None:
                    spy = subprocess.Popen([str(Path(sys.executable).parent / "py-spy"), "record", "--pid", str(pid), "--format", "raw",
                                            "--rate", "250", "--output", str(py_spy), "--threads", "--nonblocking"],
                                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                    time.sleep(1.0)  # py-spy attaches before the first measured request
                for trajectory in trajectories:
                    headers = {"Authorization": f"Bearer {PROXY_KEY}", "X-Memory-Session": f"profile-{trajectory.name}-b{budget}",
                               "X-Memory-Budget": str(budget)}
                    wanted = [i for i in trajectory.steps() if trajectory.is_step(i)][:steps]
                    for i in wanted:
                        body = {"model": MODEL, "messages": list(trajectory.messages[:i]), "tools": TOOLS}
                        upstream.fake.enqueue(reply_of(trajectory.messages[i]))
                        before = process_cpu_ns(pid)
                        if last is not None:
                            last["after_ms"] = (before - last.pop("_end")) / 1e6
                        started = time.perf_counter()
                        response = http.post(proxy.url + "/v1/chat/completions", json=body, headers=headers)
                        wall = (time.perf_counter() - started) * 1000.0
                        end = process_cpu_ns(pid)
                        upstream.fake.discard_replies()
                        seen = upstream.fake.take_requests()
                        received = _received(seen[-1].json() if seen else {})
                        last = {"trajectory": trajectory.name, "step": i, "status": response.status_code,
                                "mode": response.headers.get("x-memory-mode", ""), "request_ms": (end - before) / 1e6,
                                "wall_ms": wall, **received, "_end": end}
                        records.append(last)
                    upstream.fake.cache.reset()
                if last is not None:
                    last["after_ms"] = (process_cpu_ns(pid) - last.pop("_end")) / 1e6
        finally:
            if spy is not None:
                spy.send_signal(2)
                spy.wait(timeout=60)
            proxy.stop()
            upstream.served.stop()
    return {"steps": records}


def phases(collapsed: Path) -> list[tuple[str, int, float]]:
    """(phase, samples, share of the busy samples) from py-spy's collapsed stacks."""
    counts: Counter[str] = Counter()
    for line in collapsed.read_text(encoding="utf-8", errors="replace").splitlines():
        stack, _, n = line.rpartition(" ")
        if not stack or not n.isdigit() or any(idle in stack.rsplit(";", 1)[-1] for idle in IDLE):
            continue
        phase = next((name for name, markers in PHASES if any(m in stack for m in markers)), "other (HTTP, event loop, threads)")
        counts[phase] += int(n)
    total = sum(counts.values())
    return [(name, n, n / total if total else 0.0) for name, n in counts.most_common()]


def summary(run: dict[str, Any]) -> dict[str, float]:
    steps = run["steps"]
    req = [s["request_ms"] for s in steps]
    after = [s.get("after_ms", 0.0) for s in steps]
    wall = [s["wall_ms"] for s in steps]
    q = statistics.quantiles(req, n=100) if len(req) > 1 else req * 99
    return {"steps": len(steps), "request_cpu_p50": statistics.median(req), "request_cpu_p99": q[98], "request_cpu_mean": statistics.fmean(req),
            "after_cpu_mean": statistics.fmean(after), "wall_p50": statistics.median(wall)}


def compare(before: dict[str, Any], after: dict[str, Any]) -> None:
    a = {(s["trajectory"], s["step"]): s["forwarded"] for s in before["steps"]}
    b = {(s["trajectory"], s["step"]): s["forwarded"] for s in after["steps"]}
    same = sum(1 for k in a if k in b and a[k] == b[k])
    print(f"forwarded prompts identical byte for byte: {same} of {len(a)} steps (after run has {len(b)})")
    for k in sorted(k for k in a if k in b and a[k] != b[k])[:10]:
        print("  differs:", k)
    fields_before = {(s["trajectory"], s["step"]): s.get("fields") for s in before["steps"]}
    fields_after = {(s["trajectory"], s["step"]): s.get("fields") for s in after["steps"]}
    if all(fields_before.values()) and all(fields_after.values()):
        moved: Counter[str] = Counter()
        for k, old in fields_before.items():
            new = fields_after.get(k) or {}
            moved.update(f"{name}: {'added' if name not in old else 'dropped' if name not in new else 'changed'}"
                         for name in set(old) | set(new) if old.get(name) != new.get(name))
        print(f"top-level fields that differ (steps): {dict(moved) or 'none'}")
    for name, run in (("before", before), ("after", after)):
        print(name, json.dumps({k: round(v, 2) for k, v in summary(run).items()}), run.get("meta", {}))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.agent_profile", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--agent-traces", default=DEFAULT_TRACES)
    parser.add_argument("--only", default="pvlib", help="comma-separated parts of trajectory names")
    parser.add_argument("--budget", type=int, default=8000)
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--embedding-model", default=None, help="the proxy's embedding model (default: its default)")
    parser.add_argument("--out", default=None)
    parser.add_argument("--py-spy", default=None, help="sample the proxy with py-spy into this file (collapsed stacks)")
    parser.add_argument("--compare", nargs=2, default=None, metavar=("BEFORE", "AFTER"))
    args = parser.parse_args(argv)
    if args.compare:
        compare(*(json.loads(Path(p).read_text(encoding="utf-8")) for p in args.compare))
        return 0
    traces = Path(args.agent_traces)
    traces = traces if traces.is_absolute() else REPO_ROOT / traces
    spy = Path(args.py_spy) if args.py_spy else None
    if spy is not None and shutil.which("py-spy", path=str(Path(sys.executable).parent)) is None:
        raise SystemExit("py-spy is not installed in this environment (pip install py-spy)")
    commit = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True).stdout.strip()
    dirty = subprocess.run(["git", "status", "--porcelain", "memory", "proxy"], cwd=REPO_ROOT, capture_output=True, text=True).stdout.strip()
    with open("/proc/loadavg", encoding="ascii") as fh:
        load_start = fh.read().split()[:3]
    run = replay([w for w in args.only.split(",") if w], args.budget, traces, args.steps, args.embedding_model, spy)
    with open("/proc/loadavg", encoding="ascii") as fh:
        load_end = fh.read().split()[:3]
    run["meta"] = {"commit": commit + (" (modified)" if dirty else ""), "only": args.only, "budget": args.budget,
                   "load_start": load_start, "load_end": load_end, "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    if args.out:
        Path(args.out).write_text(json.dumps(run) + "\n", encoding="utf-8")
    print(json.dumps({k: round(v, 2) for k, v in summary(run).items()} | run["meta"]))
    if spy is not None and spy.exists():
        for name, n, share in phases(spy):
            print(f"  {name:<36} {n:>7} samples  {share:6.1%}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
