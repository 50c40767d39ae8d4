"""Time to first answer: how long after `memory-runtime serve` starts `/healthz` first answers 200,
and how long until the embedding model is ready (the body is a plain "ok"; while the model loads
it says that ranking is lexical).

    python -m benchmarks.start_time [--runs 3] [--model DEFAULT|none]

Each run starts the proxy as a child process on a fresh database with the default embedding model
(no upstream is called), polls `/healthz` every 10 ms from the moment the process is spawned, and
stops the child once the model is ready. Runs against whatever `proxy` is importable, so the same
command measures another checkout (`PYTHONPATH=<checkout> python -m benchmarks.start_time`).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import yaml

from testkit.processes import clean_env, free_port

__all__ = ["run_once", "main"]

POLL_S = 0.01
DEADLINE_S = 120.0


def run_once(folder: Path, model: str | None) -> tuple[float, float]:
    """(seconds to the first 200 from /healthz, seconds until it says the model is ready)."""
    port = free_port()
    settings: dict[str, object] = {"storage_path": str(folder / "memory.sqlite"), "log_level": "info",
                                   "upstreams": {"openai": {"api_base": "http://127.0.0.1:9/v1"}}}
    if model is not None:
        settings["embedding"] = {"model": model}
    config = folder / "proxy.yaml"
    config.write_text(yaml.safe_dump(settings), encoding="utf-8")
    env = {**clean_env(), "PYTHONPATH": os.environ.get("PYTHONPATH", str(Path.cwd()))}
    cmd = [sys.executable, "-m", "proxy.cli.main", "serve", "--config", str(config), "--port", str(port)]
    first: float | None = None
    with (folder / "proxy.log").open("wb") as log:
        start = time.perf_counter()
        process = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
        try:
            with httpx.Client(timeout=5.0) as client:
                while time.perf_counter() - start < DEADLINE_S:
                    if process.poll() is not None:
                        raise SystemExit(f"the proxy exited ({process.returncode}); see {folder / 'proxy.log'}")
                    try:
                        answer = client.get(f"http://127.0.0.1:{port}/healthz")
                    except httpx.TransportError:
                        answer = None
                    now = time.perf_counter() - start
                    if answer is not None and answer.status_code == 200:
                        first = now if first is None else first
                        if answer.text == "ok":
                            return first, now
                    time.sleep(POLL_S)  # the poll interval, bounded by the deadline above
            raise SystemExit(f"no ready /healthz within {DEADLINE_S} s")
        finally:
            process.terminate()
            process.wait(timeout=30)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.start_time", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--model", default=None, help="embedding.model (default: the configured default model)")
    args = parser.parse_args(argv)
    firsts, readies = [], []
    for n in range(args.runs):
        with tempfile.TemporaryDirectory(dir=Path.cwd()) as folder:
            first, ready = run_once(Path(folder), args.model)
        firsts.append(first)
        readies.append(ready)
        print(f"run {n + 1}: first /healthz 200 after {first:.2f} s, model ready after {ready:.2f} s", flush=True)
    print(f"median of {args.runs}: first /healthz 200 after {statistics.median(firsts):.2f} s, "
          f"model ready after {statistics.median(readies):.2f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
