"""What the embedding model costs one client: paired added latency and the proxy's CPU per request.

    python -m benchmarks.model_cost [--requests 300] [--embedding-model sentence-transformers/all-MiniLM-L6-v2|none]

The protocol of `benchmarks.stress`'s "1 client alone" row (the same `_paired` client: each
request sent straight to the fake upstream and through the proxy, back to back, half streaming,
every request over its budget so it compiles; first `WARMUP` pairs dropped), on its own, plus what
a loaded machine does not inflate: the proxy process's CPU time per request (user + system, from
/proc), once over the measured pairs (the request path and whatever background work ran
meanwhile) and once more after the proxy has gone idle again (the background embedding those
requests left behind, included). Loopback only; bounded by request count and by
`benchmarks.overhead.IDLE_DEADLINE_S`.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from testkit.processes import start_proxy_process, start_upstream_process

from .overhead import process_cpu_seconds, settled_cpu_seconds
from .stress import CHUNK_CHARS, WARMUP, _all_workers_ready, _paired

__all__ = ["ModelCost", "run", "main"]

BUDGET = 64  # stress's default: below each request's size, so every request compiles


@dataclass(frozen=True)
class ModelCost:
    embedding_model: str
    pairs: int
    added_p50: float
    added_p99: float
    cpu_ms_during: float  # proxy CPU per measured request while the pairs ran
    cpu_ms_settled: float  # the same, once the proxy is idle again (background catch-up included)

    def line(self) -> str:
        return (f"{self.embedding_model}: {self.pairs} pairs, added p50 / p99 {self.added_p50:.1f} / {self.added_p99:.1f} ms; "
                f"proxy CPU per request {self.cpu_ms_during:.1f} ms during, {self.cpu_ms_settled:.1f} ms settled")


def run(requests: int, embedding_model: str, folder: Path | None = None) -> ModelCost:
    folder = folder or Path(tempfile.mkdtemp(prefix="model-cost-"))
    upstream = start_upstream_process(folder, 0.0, CHUNK_CHARS)
    try:
        proxy = start_proxy_process(folder, upstream.url, embedding_model=embedding_model)
        try:
            _all_workers_ready(proxy.url, 1)
            pid = proxy.process.pid
            asyncio.run(_paired(proxy.url, upstream.url, "warm", WARMUP, BUDGET))
            settled_cpu_seconds(pid)
            start = process_cpu_seconds(pid)
            diffs = asyncio.run(_paired(proxy.url, upstream.url, "single", requests, BUDGET))
            during = process_cpu_seconds(pid) - start
            settled = settled_cpu_seconds(pid) - start
        finally:
            proxy.stop()
    finally:
        upstream.stop()
    p50, p99 = (float(v) for v in np.percentile(np.asarray(diffs), [50, 99]))
    n = max(1, len(diffs))
    return ModelCost(embedding_model, len(diffs), p50, p99, 1000 * during / n, 1000 * settled / n)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.model_cost", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=300, help="measured pairs (after the warm-up)")
    parser.add_argument("--embedding-model", default="sentence-transformers/all-MiniLM-L6-v2", help='a model name, or "none"')
    args = parser.parse_args(argv)
    print(run(args.requests, args.embedding_model).line())
    return 0


if __name__ == "__main__":
    sys.exit(main())
