"""The public face of the library: `create_runtime`, `Runtime` and `Session`."""

from __future__ import annotations

import asyncio
import json
from collections import OrderedDict
import logging
import sqlite3
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any
from collections.abc import Sequence

import numpy as np

from .compiler import CompileInput, CompileResult, assemble
from .embeddings import DEFAULT_MODEL, Embedder, load_embedder
from .errors import InvalidArgumentError, InvalidEventError, SessionNotFoundError, StorageError
from .events import Event, parse_event
from .index import SessionView
from .ingest import add_pair_probes, apply_state, prepare_events, sha256_text
from .records import SessionSummary
from .retrieval import CANDIDATES, DEFAULT_OPTIONS, RankOptions, fts_query, is_change_query, rank_chunks
from .sqlite_store import SqliteStore
from .store import Store, StoreTx
from .state import state_as_dict
from .tokens import get_counter
from .transcript import SYSTEM_ROLES, chain_hashes, message_hash, message_text, message_to_event

__all__ = ["create_runtime", "Runtime", "Session", "SyncResult"]

log = logging.getLogger("memory")
_CHUNKING_COUNTER = "gpt-4o-mini"
MAX_SESSION_ID = 256
QUERY_VECTOR_CACHE = 256


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
                 store: Store | None = None, rank_options: RankOptions = DEFAULT_OPTIONS) -> None:
        self.store: Store = store if store is not None else SqliteStore(storage_path)
        self.rank_options = rank_options
        self._embedding_model = embedding_model
        self._embedding_model_dir = embedding_model_dir
        self.embedder: Embedder | None = embedder
        self._views: dict[str, SessionView] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._open_lock = asyncio.Lock()
        self._opened = False
        self._background: set[asyncio.Task[None]] = set()
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

    async def resolve_session(self, messages: Sequence[dict[str, Any]], scope: str = "") -> str | None:
        """The stored session (within `scope`) whose transcript is the longest prefix of `messages`."""
        await self.open()
        hashes = [message_hash(m) for m in messages if isinstance(m, dict) and m.get("role") not in SYSTEM_ROLES]
        return await self.store.find_session_by_head(scope, chain_hashes(hashes))

    async def delete_session(self, session_id: str) -> bool:
        """Erase a session for good (rows, full-text index, vectors only it used; file vacuumed)."""
        await self.open()
        async with self.lock(session_id):
            self._views.pop(session_id, None)
            return await self.store.delete_session(_check_session_id(session_id))

    async def view(self, session_id: str, query: str | None = None) -> tuple[SessionView, np.ndarray | None]:
        """The up-to-date in-process view of a session with every chunk embedded, and the
        embedding of `query` (computed in the same batch as any missing chunks)."""
        view = self._views.get(session_id)
        if view is None:
            view = SessionView(self.embedder.dim if self.embedder else 1)
            self._views[session_id] = view
        max_event, max_chunk = await self.store.high_water(session_id)
        if max_event > view.max_event or max_chunk > view.max_chunk:
            delta = await self.store.load_delta(session_id, view.max_event, view.max_artifact, view.max_chunk)
            vectors = await self.store.get_vectors(self.embedding_name, [c.content_hash for c in delta.chunks]) if self.embedder else {}
            view.apply(delta, vectors)
        qvec: np.ndarray | None = None
        if self.embedder is not None and (view.missing or (query and query.strip())):
            qvec = await self._embed_missing(view, query if query and query.strip() else None)
        return view, qvec

    def embed_soon(self, session_id: str) -> None:
        """Embed a session's new chunks in the background, so the next compile finds them ready
        (compile still embeds whatever is missing, so results never depend on the timing)."""
        if self.embedder is None:
            return
        task = asyncio.get_running_loop().create_task(self._embed_in_background(session_id))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _embed_in_background(self, session_id: str) -> None:
        try:
            async with self.lock(session_id):
                await self.view(session_id)
        except asyncio.CancelledError:
            raise
        except Exception:  # the next compile retries and reports; a background task must not crash the loop
            log.exception("memory: background embedding failed for a session")

    async def _embed_missing(self, view: SessionView, query: str | None) -> np.ndarray | None:
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
            ranked = rank_chunks(view, lexical, qvec, change_query=is_change_query(query), candidates=pool,
                                 options=self.runtime.rank_options)
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
            await self.runtime.view(self.id)

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
                   embedding_model_dir: str | Path | None = None, embedder: Embedder | None = None,
                   rank_options: RankOptions = DEFAULT_OPTIONS) -> Runtime:
    """Create a runtime over one SQLite file. `embedding_model` is a fastembed model name (default
    all-MiniLM-L6-v2, provisioned locally) or "none" for lexical-only retrieval; `embedding_model_dir`
    points at a local model folder. Nothing is downloaded. `rank_options` switches ranking stages
    off (for ablations; the default runs them all)."""
    return Runtime(storage_path, embedding_model, embedding_model_dir, embedder, rank_options=rank_options)
