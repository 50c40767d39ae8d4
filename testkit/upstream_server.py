"""The fake upstream in its own process, for benchmarks that measure through real sockets:

    python -m testkit.upstream_server --port N [--latency-ms MS] [--chunk-chars C]

It replies `echo: <last user text>` (JSON, or SSE in C-character pieces) after MS milliseconds, and
keeps no request log (a long run must not grow one), so every millisecond measured beyond MS
belongs to the client or to the proxy in between. Listens on 127.0.0.1 only.
"""

from __future__ import annotations

import argparse

import uvicorn

from .upstream import FakeUpstream

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m testkit.upstream_server", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--latency-ms", type=float, default=0.0, help="delay before every model answer")
    parser.add_argument("--chunk-chars", type=int, default=7, help="characters per streamed content chunk")
    args = parser.parse_args(argv)
    fake = FakeUpstream(keep_requests=False, latency_s=args.latency_ms / 1000, chunk_chars=args.chunk_chars)
    uvicorn.run(fake.app(), host="127.0.0.1", port=args.port, log_level="warning", access_log=False)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
