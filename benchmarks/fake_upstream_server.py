"""Serve the test suite's fake OpenAI upstream in its own process, for the overhead benchmark:

    python -m benchmarks.fake_upstream_server --port 8901

It replies `echo: <last user text>` (JSON, or SSE in 7-character pieces) without delay, so every
millisecond measured beyond it belongs to the client or to the proxy in between.
"""

from __future__ import annotations

import argparse

import uvicorn
from starlette.requests import Request

from tests.fakes.upstream import FakeUpstream, Recorded

__all__ = ["main"]


class _Forgetful(FakeUpstream):
    """The fake keeps every request for test assertions; a long benchmark must not."""

    async def _record(self, request: Request) -> Recorded:
        recorded = await super()._record(request)
        self.requests.clear()
        return recorded


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    uvicorn.run(_Forgetful().app(), host="127.0.0.1", port=args.port, log_level="warning", access_log=False)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
