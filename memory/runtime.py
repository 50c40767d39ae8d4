"""The public face of the library: `create_runtime`, `Runtime` and `Session`."""

from __future__ import annotations

import asyncio
import json
from collections import OrderedDict
import logging
import sqlite3
from contextlib import AsyncExitStack
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any
from collections.abc import Sequence

import numpy as np

from .compiler import CompileInput, CompileResult, assemble
from .embeddings import DEFAULT_MODEL, Embedder, load_embedder
from .errors import InvalidArgumentError, InvalidEventError, MemoryRuntimeError, SessionNotFoundError, StorageError
from .events import Event, parse_event
from .index import SessionView
from .ingest import add_pair_probes, apply_state, prepare_events, sha256_text
from .records import SessionSummary
from .retrieval import CANDIDATES, fts_query, is_change_query, rank_chunks
from .sqlite_store import SqliteStore
from .store import Store, StoreTx
from .state import state_as_dict
from .tokens import get_counter
from .transcript import SYSTEM_ROLES, chain_hashes, message_hash, message_text, message_to_event

__all__ = ["create_runtime", "Runtime", "Session", "SyncResult"]

log = logging.getLogger("memory")
_CHUNKING_COUNTER = "gpt-4o-mini"
# Room for a caller's namespace in front of a 256-character id ("<namespace>/<id>").
MAX_SESSION_ID = 512
QUERY_VECTOR_CACHE = 256
# Session views kept in process (least recently used dropped first); a dropped view is rebuilt
# from the store on its next use.
MAX_VIEWS = 256
# A compile embeds at most this many missing chunks (newest first) before it answers; the rest are
# embedded in the background, EMBED_BATCH at a time, so a huge first history costs a bounded wait
# and never holds a session's lock for long. Until then those chunks rank by their words alone.
EMBED_NOW = 128
EMBED_BATCH = 64


@dataclass(frozen=True)
class SyncResult:
    """How a resent message list related to what was stored: the matched prefix and what was new."""

    common_prefix: int
    stored: int


def _check_session_id(session_id: Any) -> str:
    if not isinstance(session_id, str) or not session_id.strip() or len(session_id) > MAX_SESSION_ID:
        raise InvalidArgumentError(f"session id must be a non-empty string of at most {MAX_SESSION_ID} characters")
    if any(ord(c) < 32 for c in session_id):
        raise InvalidArgumentError("session id must not contain control characters")
    return session_id


class Runtime:
    """Owns the store, the embedder and the per-session views. Use as an async context manager, or
    call `open()` / `close()`; every session call opens it lazily if needed."""

    def __init__(self, storage_path: str | Path, embedding_model: str | None = DEFAULT_MODEL,
                 embedding_model_dir: str | Path | None = None, embedder: Embedder | None = None,
                 store: Store | None = None, max_views: int = MAX_VIEWS) -> None:
        self.store: Store = store if store is not None else SqliteStore(storage_path)
        self._embedding_model = embedding_model
        self._embedding_model_dir = embedding_model_dir
        self.embedder: Embedder | None = embedder
        self._views: OrderedDict[str, SessionView] = OrderedDict()
        self._max_views = max(1, max_views)
        self._locks: dict[str, asyncio.Lock] = {}
        self._open_lock = asyncio.Lock()
        self._opened = False
        self._background: set[asyncio.Task[None]] = set()
        self._embedding: set[str] = set()  # sessions with a background embedding task
        self._background_slot = asyncio.Semaphore(1)  # one background batch at a time: one core at most
        # Vectors of recent compile queries by content hash: the new user message is usually stored
        # right after it was compiled for, and its chunk is the same text.
        self._query_vectors: OrderedDict[str, bytes] = OrderedDict()

    async def __aenter__(self) -> Runtime:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def open(self) -> None:
        """Open the store (running migrations) and load the embedding model."""
        async with self._open_lock:
            if self._opened:
                return
            if self.embedder is None and (self._embedding_model or DEFAULT_MODEL).lower() != "none":
                self.embedder = await asyncio.to_thread(load_embedder, self._embedding_model, self._embedding_model_dir)
            if self.embedder is None:
                log.warning("memory: embeddings are OFF (embedding model 'none'); retrieval is lexical only")
            await self.store.open()
            self._opened = True

    async def close(self) -> None:
        for task in list(self._background):
            task.cancel()
        if self._background:
            await asyncio.gather(*self._background, return_exceptions=True)
        await self.store.close()
        self._views.clear()
        self._opened = False

    @property
    def embedding_name(self) -> str:
        return self.embedder.name if self.embedder is not None else "none"

    def session(self, session_id: str) -> Session:
        """A handle on one session (nothing is stored until something is ingested)."""
        return Session(self, _check_session_id(session_id))

    def lock(self, session_id: str) -> asyncio.Lock:
        return self._locks.setdefault(session_id, asyncio.Lock())

    async def list_sessions(self) -> list[SessionSummary]:
        await self.open()
        return await self.store.list_sessions()

    async def page_sessions(self, prefix: str = "", after: str | None = None, limit: int = 100) -> list[SessionSummary]:
        """At most `limit` sessions whose id starts with `prefix`, in id order, after the id `after`."""
        if isinstance(limit, bool) or not isinstance(limit, int) or limit <= 0:
            raise InvalidArgumentError("limit must be a positive integer")
        await self.open()
        return await self.store.page_sessions(prefix, after, limit)

    async def health(self) -> str | None:
        """None while memory can store what it is given; otherwise the reason it cannot."""
        try:
            await self.open()
            return await self.store.health()
        except MemoryRuntimeError as exc:
            return str(exc)

    async def resolve_session(self, messages: Sequence[dict[str, Any]], scope: str = "") -> str | None:
        """The stored session (within `scope`) whose transcript is the longest prefix of `messages`."""
        await self.open()
        hashes = [message_hash(m) for m in messages if isinstance(m, dict) and m.get("role") not in SYSTEM_ROLES]
        return await self.store.find_session_by_head(scope, chain_hashes(hashes))

    async def delete_session(self, session_id: str) -> bool:
        """Erase a session for good (rows, full-text index, vectors only it used; deleted content
        overwritten with zeros and free pages returned, without rewriting the rest of the file)."""
        return bool(await self.delete_sessions([session_id]))

    async def delete_sessions(self, session_ids: Sequence[str]) -> list[str]:
        """Erase several sessions in one unit; returns the ids that existed."""
        ids = [_check_session_id(s) for s in session_ids]
        await self.open()
        async with AsyncExitStack() as stack:
            for sid in sorted(set(ids)):  # a fixed order: two erasers never wait on each other
                await stack.enter_async_context(self.lock(sid))
            for sid in ids:
                self._views.pop(sid, None)
            return await self.store.delete_sessions(ids)

    async def rename_session(self, old_id: str, new_id: str, old_scope_prefix: str = "", new_scope_prefix: str = "") -> bool:
        """Move a session to a new id (for re-assigning sessions to a caller's new identity). A
        transcript-matching scope starting with `old_scope_prefix` gets `new_scope_prefix`
        instead. False when `old_id` has nothing stored; `InvalidArgumentError` when `new_id` has."""
        old, new = _check_session_id(old_id), _check_session_id(new_id)
        await self.open()
        async with AsyncExitStack() as stack:
            for sid in sorted({old, new}):
                await stack.enter_async_context(self.lock(sid))
            self._views.pop(old, None)
            self._views.pop(new, None)
            return await self.store.rename_session(old, new, old_scope_prefix, new_scope_prefix)

    async def expire_sessions(self, updated_before: float | None = None, keep_per_namespace: int | None = None) -> list[str]:
        """Erase sessions not updated since `updated_before` (a `time.time()` value), and those
        beyond the `keep_per_namespace` most recently updated of their namespace (the part of the
        id before its first "/"). Returns the erased ids."""
        await self.open()
        erased: list[str] = []
        while True:
            batch = await self.store.expired_sessions(updated_before, keep_per_namespace, 500)
            if not batch:
                return erased
            erased += await self.delete_sessions(batch)

    async def view(self, session_id: str, query: str | None = None, embed_limit: int | None = EMBED_NOW) -> tuple[SessionView, np.ndarray | None]:
        """The up-to-date in-process view of a session, and the embedding of `query` (computed in
        the same batch as missing chunks). At most `embed_limit` missing chunks are embedded now
        (None: all of them); the rest are left to a background task."""
        view = await self._fresh_view(session_id)
        qvec: np.ndarray | None = None
        if self.embedder is not None and (view.missing or (query and query.strip())):
            qvec = await self._embed_missing(view, query if query and query.strip() else None, embed_limit)
            if view.missing:
                self.embed_soon(session_id)
        return view, qvec

    async def _fresh_view(self, session_id: str) -> SessionView:
        view = self._views.get(session_id)
        mark = await self.store.high_water(session_id)
        if view is None or mark[0] < view.max_event or mark[1] < view.max_chunk or mark[2] != view.created_at:
            # New, or the session was erased or renamed (and maybe recreated) under this view.
            view = SessionView(self.embedder.dim if self.embedder else 1)
            view.created_at = mark[2]
        self._views[session_id] = view
        self._views.move_to_end(session_id)
        while len(self._views) > self._max_views:
            self._views.popitem(last=False)
        if mark[0] > view.max_event or mark[1] > view.max_chunk:
            delta = await self.store.load_delta(session_id, view.max_event, view.max_artifact, view.max_chunk)
            vectors = await self.store.get_vectors(self.embedding_name, [c.content_hash for c in delta.chunks]) if self.embedder else {}
            view.apply(delta, vectors)
        return view

    def embed_soon(self, session_id: str) -> None:
        """Embed a session's new chunks in the background, so the next compile finds them ready.
        One task per session; it loops until nothing is missing."""
        if self.embedder is None or session_id in self._embedding:
            return
        self._embedding.add(session_id)
        task = asyncio.get_running_loop().create_task(self._embed_in_background(session_id))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _embed_in_background(self, session_id: str) -> None:
        try:
            while True:
                # A batch at a time, the session's lock released in between, so a compile of this
                # session waits for one batch at most.
                async with self._background_slot, self.lock(session_id):
                    view = await self._fresh_view(session_id)
                    if view.missing:
                        await self._embed_missing(view, None, EMBED_BATCH)
                    if not view.missing:
                        # No await between this check and leaving the set: a write that lands
                        # after it starts a new task.
                        self._embedding.discard(session_id)
                        return
        except asyncio.CancelledError:
            self._embedding.discard(session_id)
            raise
        except Exception:  # the next compile retries and reports; a background task must not crash the loop
            self._embedding.discard(session_id)
            log.exception("memory: background embedding failed for a session")

    async def _embed_missing(self, view: SessionView, query: str | None, limit: int | None = None) -> np.ndarray | None:
        assert self.embedder is not None
        positions = sorted(view.missing)
        by_hash: dict[str, list[int]] = {}
        texts: dict[str, str] = {}
        for pos in positions:
            row = view.chunk_rows[pos]
            by_hash.setdefault(row.content_hash, []).append(pos)
            texts.setdefault(row.content_hash, row.text)
        known = await self.store.get_vectors(self.embedding_name, list(by_hash)) if by_hash else {}
        fresh = {h: self._query_vectors[h] for h in by_hash if h not in known and h in self._query_vectors}
        todo = [h for h in by_hash if h not in known and h not in fresh]
        if limit is not None and len(todo) > limit:
            # Newest first: recent turns are the likeliest to matter, and dicts keep position order.
            todo = todo[-limit:]
            by_hash = {h: by_hash[h] for h in (*known, *fresh, *todo)}
        qvec: np.ndarray | None = None
        if todo or query is not None:
            # One batch for the query and the missing chunks: each embed call has a fixed cost.
            batch = [texts[h] for h in todo] + ([query] if query is not None else [])
            matrix = await asyncio.to_thread(self.embedder.embed, batch)
            fresh.update({h: matrix[i].astype(np.float32).tobytes() for i, h in enumerate(todo)})
            if query is not None:
                qvec = matrix[-1]
                self._query_vectors[sha256_text(query)] = qvec.astype(np.float32).tobytes()
                while len(self._query_vectors) > QUERY_VECTOR_CACHE:
                    self._query_vectors.popitem(last=False)
        if fresh:
            async with self.store.transaction() as tx:
                await tx.put_vectors(self.embedding_name, fresh.items())
            known.update(fresh)
        for h, poss in by_hash.items():
            vec = np.frombuffer(known[h], dtype=np.float32)
            for pos in poss:
                view.set_vector(pos, vec)
        return qvec


class Session:
    """One conversation's memory. All methods are coroutines; see the README for the event types."""

    def __init__(self, runtime: Runtime, session_id: str) -> None:
        self.runtime = runtime
        self.id = session_id

    # -- writing -------------------------------------------------------------------------------
    async def ingest(self, event: dict[str, Any]) -> int:
        """Validate and store one event; returns its event id. Raises `InvalidEventError` (nothing
        stored) for an unknown type, missing or non-string content, or a malformed payload."""
        return (await self.ingest_many([event]))[0]

    async def ingest_many(self, events: Sequence[dict[str, Any]]) -> list[int]:
        """Validate every event first, then store them all in one transaction."""
        if isinstance(events, (str, bytes, dict)) or not isinstance(events, Sequence):
            raise InvalidEventError("ingest_many takes a list of events")
        parsed = [parse_event(e) for e in events]
        await self.runtime.open()
        async with self.runtime.lock(self.id):
            ids = await self._store(parsed, append_transcript=True)
        self.runtime.embed_soon(self.id)
        return ids

    async def _store(self, parsed: list[Event], append_transcript: bool, scope: str = "", transcript_from: int | None = None) -> list[int]:
        count = get_counter(_CHUNKING_COUNTER).count
        try:
            async with self.runtime.store.transaction() as tx:
                await tx.ensure_session(self.id, scope)
                rows, message_idx = await prepare_events(tx, self.id, parsed, count)
                ids = await tx.add_events(self.id, rows)
                chat = [i for i in message_idx if rows[i].role in ("user", "assistant")]
                for i in chat:
                    await apply_state(tx, self.id, rows[i].content, ids[i])
                if self.runtime.embedder is not None:
                    await add_pair_probes(tx, self.id, [ids[i] for i in chat], [rows[i].content for i in chat])
                if append_transcript and message_idx:
                    await self._extend_transcript(tx, [(rows[i].message_hash or "", ids[i]) for i in message_idx], transcript_from)
        except sqlite3.Error as exc:
            raise StorageError(f"write failed: {exc}") from exc
        return [ids[i] for i in range(len(rows)) if rows[i].parent_index is None]

    async def _extend_transcript(self, tx: StoreTx, entries: list[tuple[str, int | None]], from_pos: int | None) -> None:
        current = await tx.transcript(self.id)
        keep = current if from_pos is None else current[:from_pos]
        start = keep[-1][2] if keep else None
        chain = chain_hashes([h for h, _ in entries], start)
        rows = [(len(keep) + i, h, chain[i], eid) for i, (h, eid) in enumerate(entries)]
        await tx.replace_transcript(self.id, len(keep), rows, chain[-1] if chain else (keep[-1][2] if keep else None))

    async def sync_messages(self, messages: Sequence[dict[str, Any]], scope: str = "") -> SyncResult:
        """Store what is new in a resent OpenAI message list. The stored transcript prefix is
        matched by hash; the divergent rest (an edit, or a new turn) is stored as new events and
        becomes the transcript's tail. System/developer messages are not stored."""
        if not isinstance(messages, Sequence) or isinstance(messages, (str, bytes)):
            raise InvalidEventError("messages must be a list of message objects")
        convo = [m for m in messages if not (isinstance(m, dict) and m.get("role") in SYSTEM_ROLES)]
        for m in convo:
            if not isinstance(m, dict):
                raise InvalidEventError("each message must be an object")
        # Hash first, parse (validate, redact, chunk) only what is new: a resent history of a long
        # conversation costs one hash per message.
        hashes = [message_hash(m) for m in convo]
        await self.runtime.open()
        async with self.runtime.lock(self.id):
            stored = await self.runtime.store.transcript_hashes(self.id)
            common = 0
            while common < min(len(stored), len(hashes)) and stored[common] == hashes[common]:
                common += 1
            if common == len(convo):
                return SyncResult(common, 0)
            new = [replace(parse_event(message_to_event(m)), message_hash=h) for m, h in zip(convo[common:], hashes[common:])]
            await self._store(new, append_transcript=True, scope=scope, transcript_from=common)
        self.runtime.embed_soon(self.id)
        return SyncResult(common, len(new))

    async def observe(self, assistant_text: str = "", tool_calls: list[dict[str, Any]] | None = None,
                      message: dict[str, Any] | None = None) -> int:
        """Store the assistant's reply and extract the state lines in it (Decision:, Constraint:,
        Open:, Glossary:, Resolved: Qn). Pass `message` (an OpenAI assistant message) to keep
        tool calls and provider fields. Returns the event id."""
        if message is None:
            if not isinstance(assistant_text, str):
                raise InvalidArgumentError("assistant_text must be a string")
            message = {"role": "assistant", "content": assistant_text}
            if tool_calls:
                message["tool_calls"] = tool_calls
        if not isinstance(message, dict) or message.get("role", "assistant") != "assistant":
            raise InvalidArgumentError("observe takes an assistant message")
        event = message_to_event({**message, "role": "assistant"})
        assert event is not None
        return await self.ingest(event)

    async def resolve(self, label: str) -> None:
        """Close an open question (e.g. "Q2") by hand."""
        await self.ingest({"type": "user_message", "payload": {"content": f"Resolved: {label}"}})

    # -- reading -------------------------------------------------------------------------------
    async def compile(self, user_message: str | dict[str, Any] | list[dict[str, Any]], budget_tokens: int,
                      model: str = "gpt-4o-mini", system: str | list[dict[str, Any]] | None = None,
                      remember: bool = False) -> CompileResult:
        """Compile the prompt for the next call: system message(s), state, retrieved evidence,
        recent turns and the new user message, never above `budget_tokens` as counted by the
        provider's formula. Read-only (the user message is not stored) and deterministic.
        `user_message` may be a string, one message, or the live tail of messages (kept verbatim)."""
        if isinstance(budget_tokens, bool) or not isinstance(budget_tokens, int):
            raise InvalidArgumentError("budget_tokens must be an integer")
        if budget_tokens < 0:
            raise InvalidArgumentError("budget_tokens must not be negative")
        counter = get_counter(model)
        tail = _as_messages(user_message, "user")
        system_msgs = _as_messages(system, "system") if system is not None else []
        query = _query_text(tail)
        await self.runtime.open()
        async with self.runtime.lock(self.id):
            view, qvec = await self.runtime.view(self.id, query)
            # Enough candidates to fill the budget: roughly one per 10 tokens of budget.
            pool = max(2 * CANDIDATES, budget_tokens // 8)
            lexical = await self.runtime.store.bm25(self.id, fts_query(query), pool)
            ranked = rank_chunks(view, lexical, qvec, change_query=is_change_query(query), candidates=pool)
            state = await self.runtime.store.state_items(self.id)
            result = assemble(
                CompileInput(self.id, model, budget_tokens, system_msgs, tail, query, state, ranked), view, counter
            )
            if remember and await self.runtime.store.session_exists(self.id):
                async with self.runtime.store.transaction() as tx:
                    await tx.save_manifest(self.id, json.dumps(result.manifest, ensure_ascii=False))
        return result

    async def flush(self) -> None:
        """Embed every stored chunk that has no vector yet (compile does this too)."""
        await self.runtime.open()
        async with self.runtime.lock(self.id):
            await self.runtime.view(self.id, embed_limit=None)

    async def exists(self) -> bool:
        await self.runtime.open()
        return await self.runtime.store.session_exists(self.id)

    async def state(self, include_inactive: bool = False) -> dict[str, list[dict[str, Any]]]:
        """Decisions, constraints, open questions and glossary, each item with its label, text and
        the events it came from. Superseded and closed items are left out unless asked for."""
        await self.runtime.open()
        return state_as_dict(await self.runtime.store.state_items(self.id), include_inactive)

    async def info(self) -> dict[str, Any]:
        await self.runtime.open()
        summary = next(iter(await self.runtime.store.list_sessions(self.id)), None)
        counts = {"events": 0, "messages": 0, "artifacts": 0, "chunks": 0}
        if summary is not None:
            counts = {"events": summary.events, "messages": summary.messages, "artifacts": summary.artifacts, "chunks": summary.chunks}
        return {"id": self.id, "exists": summary is not None, "counts": counts, "state": await self.state(),
                "created_at": summary.created_at if summary else None, "updated_at": summary.updated_at if summary else None}

    async def last_manifest(self) -> dict[str, Any] | None:
        await self.runtime.open()
        raw = await self.runtime.store.last_manifest(self.id)
        return json.loads(raw) if raw else None

    async def export(self) -> dict[str, Any]:
        """Everything stored for this session, as JSON-ready data (vectors excluded). Raises
        `SessionNotFoundError` when nothing is stored under this id."""
        await self.runtime.open()
        if not await self.runtime.store.session_exists(self.id):
            raise SessionNotFoundError(f"no session {self.id!r}")
        rows = await self.runtime.store.export_rows(self.id)
        for event in rows["events"]:
            event["payload"] = json.loads(event["payload"])
        for item in rows["state_items"]:
            item["source_events"] = json.loads(item["source_events"])
        return {"session_id": self.id, **rows, "state": await self.state(include_inactive=True)}


def _as_messages(value: Any, role: str) -> list[dict[str, Any]]:
    if isinstance(value, str):
        return [{"role": role, "content": value}]
    if isinstance(value, dict):
        value = [value]
    if not isinstance(value, list) or not value or not all(isinstance(m, dict) and isinstance(m.get("role"), str) for m in value):
        raise InvalidArgumentError(f"{'user_message' if role == 'user' else 'system'} must be a string, a message dict or a non-empty list of message dicts")
    for m in value:
        message_text(m.get("content"))  # raises on a content of the wrong type
    return [dict(m) for m in value]


def _query_text(tail: list[dict[str, Any]]) -> str:
    users = [message_text(m.get("content")) for m in tail if m.get("role") == "user"]
    return "\n".join(users) if users else message_text(tail[-1].get("content"))


def create_runtime(storage_path: str | Path = "./.memory.sqlite", embedding_model: str | None = DEFAULT_MODEL,
                   embedding_model_dir: str | Path | None = None, embedder: Embedder | None = None) -> Runtime:
    """Create a runtime over one SQLite file. `embedding_model` is a fastembed model name (default
    all-MiniLM-L6-v2, provisioned locally) or "none" for lexical-only retrieval; `embedding_model_dir`
    points at a local model folder. Nothing is downloaded."""
    return Runtime(storage_path, embedding_model, embedding_model_dir, embedder)
