"""The `memory-runtime` command line.

    memory-runtime serve [--config PATH] [--host H] [--port P]
    memory-runtime sessions list|show ID|export ID|delete ID [--config PATH] [--storage PATH]
    memory-runtime provision-model
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import sys
from typing import Any

from memory import create_runtime
from memory.embeddings import provision_default_model

from .config import ProxyConfig, load_config
from .errors import ConfigError
from .logs import configure_logging

__all__ = ["main", "build_parser"]


def _provision(_: argparse.Namespace) -> int:
    path = provision_default_model()
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


async def _sessions(args: argparse.Namespace) -> Any:
    config = _config(args)
    storage = args.storage or config.storage_path
    # Listing, reading and erasing never embed anything, so the model is not loaded.
    async with create_runtime(storage_path=storage, embedding_model="none") as runtime:
        if args.action == "list":
            return [dataclasses.asdict(s) for s in await runtime.list_sessions()]
        session = runtime.session(args.session_id)
        if args.action != "delete" and not await session.exists():
            return None
        if args.action == "show":
            return await session.info()
        if args.action == "export":
            return await session.export()
        return {"id": args.session_id, "deleted": await runtime.delete_session(args.session_id)}


def _sessions_cmd(args: argparse.Namespace) -> int:
    if args.action != "list" and not args.session_id:
        print(f"sessions {args.action} needs a session id", file=sys.stderr)
        return 2
    result = asyncio.run(_sessions(args))
    if result is None:
        print(f"no session {args.session_id!r}", file=sys.stderr)
        return 1
    print(json.dumps(result, indent=2, ensure_ascii=False, default=str))
    if args.action == "delete" and not result["deleted"]:
        return 1
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="memory-runtime", description="Local-first context runtime for LLM apps.")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the OpenAI-compatible proxy")
    serve.add_argument("--config", help="YAML config file (default: $MEMORY_RUNTIME_CONFIG, else built-in defaults)")
    serve.add_argument("--host", help="bind address (default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port (default 8787)")
    serve.set_defaults(func=_serve)

    sessions = sub.add_parser("sessions", help="list, inspect, export or delete stored sessions")
    sessions.add_argument("action", choices=["list", "show", "export", "delete"])
    sessions.add_argument("session_id", nargs="?")
    sessions.add_argument("--config", help="YAML config file (for storage_path)")
    sessions.add_argument("--storage", help="SQLite file (overrides the config's storage_path)")
    sessions.set_defaults(func=_sessions_cmd)

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
