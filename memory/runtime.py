"""The public face of the library: `create_runtime` and `Runtime` (sessions: `memory.session`)."""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
from collections import OrderedDict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .embeddings import DEFAULT_MODEL, Embedder, load_embedder
from .errors import InvalidArgumentError
from .index import SessionView
from .ingest import sha256_text
from .records import SessionSummary
from .session import Session
from .sqlite_store import SqliteStore
from .store import Store
from .tokens import TiktokenCounter
from .transcript import SYSTEM_ROLES, chain_hashes, message_hash

__all__ = ["create_runtime", "Runtime"]

log = logging.getLogger("memory")
MAX_SESSION_ID = 512
QUERY_VECTOR_CACHE = 256
TOKEN_CACHE = 50_000


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
                 store: Store | None = None) -> None:
        self.store: Store = store if store is not None else SqliteStore(storage_path)
        self._embedding_model = embedding_model
        self._embedding_model_dir = embedding_model_dir
        self.embedder: Embedder | None = embedder
        self._views: dict[str, SessionView] = {}
        # Exact token counts of messages by (encoding, digest of the message's JSON): a client
        # resends its history every call, and counting it again each time is the hot path's cost.
        self._token_cache: OrderedDict[tuple[str, bytes], int] = OrderedDict()
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

    def tokens_for(self, counter: TiktokenCounter) -> Callable[[dict[str, Any]], int]:
        """`counter.message_tokens`, remembered per exact message (bounded LRU)."""
        cache = self._token_cache

        def count(message: dict[str, Any]) -> int:
            blob = json.dumps(message, sort_keys=True, ensure_ascii=False, default=str).encode("utf-8")
            key = (counter.encoding_name, hashlib.blake2b(blob, digest_size=16).digest())
            found = cache.get(key)
            if found is None:
                found = cache[key] = counter.message_tokens(message)
                if len(cache) > TOKEN_CACHE:
                    cache.popitem(last=False)
            return found

        return count

    async def list_sessions(self) -> list[SessionSummary]:
        await self.open()
        return await self.store.list_sessions()

    async def resolve_session(self, messages: Sequence[dict[str, Any]], scope: str = "") -> str | None:
        """The stored session (within `scope`) this message list continues: the one whose whole
        transcript is the longest prefix of `messages`; else the one session that holds
        `messages` (two messages or more) followed only by the reply to its last turn: a retry of
        that turn."""
        await self.open()
        hashes = [message_hash(m) for m in messages if isinstance(m, dict) and m.get("role") not in SYSTEM_ROLES]
        chain = chain_hashes(hashes)
        found = await self.store.find_session_by_head(scope, chain)
        if found is not None or len(chain) < 2:
            # A lone first message is a new conversation even if another one opened the same way.
            return found
        retried = []
        for session_id, pos, _length in await self.store.find_session_by_chain(scope, chain[-1]):
            roles = [e.role for e in (await self.store.transcript(session_id))[pos + 1 :]]
            if "user" not in roles:
                retried.append(session_id)
        # Only an unambiguous match: two conversations that opened alike leave it a new one.
        return retried[0] if len(retried) == 1 else None

    async def find_response(self, response_id: str, scope: str = "") -> tuple[str, int] | None:
        """The session (within `scope`) and transcript position a recorded response id ends at;
        None when the id is unknown, or stale (the conversation up to there was edited since)."""
        await self.open()
        found = await self.store.find_response(response_id, scope)
        if found is None:
            return None
        session_id, pos, chain = found
        transcript = await self.store.transcript(session_id)
        if pos < 1 or pos > len(transcript) or transcript[pos - 1].chain_hash != chain:
            return None
        return session_id, pos

    async def delete_session(self, session_id: str) -> bool:
        """Erase a session for good (rows, full-text index, vectors only it used; file vacuumed)."""
        await self.open()
        async with self.store.session_lock(session_id):
            self._views.pop(session_id, None)
            return await self.store.delete_session(_check_session_id(session_id))

    async def view(self, session_id: str, query: str | None = None) -> tuple[SessionView, np.ndarray | None]:
        """The up-to-date in-process view of a session with every chunk embedded, and the
        embedding of `query` (computed in the same batch as any missing chunks)."""
        view = self._views.get(session_id)
        max_event, max_chunk, generation = await self.store.high_water(session_id)
        if view is None or view.generation != generation:
            # New, or messages left the transcript since (an edit, a retry): start over.
            view = SessionView(self.embedder.dim if self.embedder else 1, generation)
            self._views[session_id] = view
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

    async def embed_query(self, query: str) -> np.ndarray | None:
        """The embedding of one question (None without an embedder)."""
        if self.embedder is None:
            return None
        matrix = await asyncio.to_thread(self.embedder.embed, [query])
        return matrix[0]

    async def _embed_in_background(self, session_id: str) -> None:
        try:
            async with self.store.session_lock(session_id):
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


def create_runtime(storage_path: str | Path = "./.memory.sqlite", embedding_model: str | None = DEFAULT_MODEL,
                   embedding_model_dir: str | Path | None = None, embedder: Embedder | None = None) -> Runtime:
    """Create a runtime over one SQLite file. `embedding_model` is a fastembed model name (default
    all-MiniLM-L6-v2, provisioned locally) or "none" for lexical-only retrieval; `embedding_model_dir`
    points at a local model folder. Nothing is downloaded."""
    return Runtime(storage_path, embedding_model, embedding_model_dir, embedder)
