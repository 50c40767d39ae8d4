"""The public face of the library: `create_runtime` and `Runtime` (sessions: `memory.session`)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager, AsyncExitStack
from pathlib import Path
from typing import Any

import numpy as np

from memory.recall.embedding_queue import EMBED_NOW_CHARS, EmbeddingQueue
from memory.recall.background_model import BackgroundModel
from memory.recall.embeddings import DEFAULT_MODEL, Embedder, load_embedder
from memory.errors import InvalidArgumentError, MemoryRuntimeError
from memory.recall.index import SessionView
from memory.recall.views import MAX_VIEWS, Views
from memory.recall.memo import MessageMemo
from memory.recall.quiet import TurnActivity
from memory.turn.compact import CompactMemo
from memory.turn.fixed import FixedAnchors, FixedPolicy
from memory.turn.transcripts import TranscriptCache
from memory.records import SessionSummary
from memory.recall.retrieval import DEFAULT_OPTIONS, RankOptions
from memory.session import Session
from memory.store.sqlite.store import SqliteStore
from memory.store.open import store_for
from memory.store.protocol import Store
from memory.recall.tokens import TiktokenCounter, stored_counter
from memory.ingest.transcript import SYSTEM_ROLES, chain_hashes, legacy_message_hash
from memory.turn.align import FIXED_HEAD_MAX, is_observation, is_tagged_context, leading_context, tail_start

__all__ = ["create_runtime", "Runtime"]

log = logging.getLogger("memory")
# Room for a caller's namespace in front of a 256-character id ("<namespace>/<id>").
MAX_SESSION_ID = 512
MESSAGE_MEMO = 50_000
# What `Session.compile` does with chunks ingested but not embedded yet (see `Runtime`).
STRICT = "strict"
BOUNDED = "bounded"
CONSISTENCY = (STRICT, BOUNDED)


def _check_session_id(session_id: Any) -> str:
    if not isinstance(session_id, str) or not session_id.strip() or len(session_id) > MAX_SESSION_ID:
        raise InvalidArgumentError(f"session id must be a non-empty string of at most {MAX_SESSION_ID} characters")
    if any(ord(c) < 32 for c in session_id):
        raise InvalidArgumentError("session id must not contain control characters")
    return session_id


def _check_consistency(consistency: Any) -> str:
    if consistency not in CONSISTENCY:
        raise InvalidArgumentError(f"consistency must be one of {list(CONSISTENCY)}, not {consistency!r}")
    return str(consistency)


class Runtime:
    """Owns the store, the embedder and the per-session views. Use as an async context manager, or
    call `open()` / `close()`; every session call opens it lazily if needed.

    `consistency` says what a compile does with chunks ingested but not embedded yet (new chunks
    are embedded in the background after every write). ``"strict"`` (the default): the compile
    embeds all of them first and waits for those another task is embedding, so it sees everything
    ingested before it and two compiles of the same question give the same prompt; a compile right
    after a large ingest pays for embedding it (as `flush` does). ``"bounded"``: the compile embeds
    at most `EMBED_NOW_CHARS` characters of them (newest first) and ranks the rest by their words
    alone until the background has embedded them: a bounded wait, at the price of missing
    paraphrases of what was just ingested. The proxy's per-request path (`Session.prepare_turn`) is
    always bounded: a client's first contact may bring a huge history, and later turns leave a
    small backlog."""

    def __init__(self, storage_path: str | Path, embedding_model: str | None = DEFAULT_MODEL,
                 embedding_model_dir: str | Path | None = None, embedder: Embedder | None = None,
                 store: Store | None = None, max_views: int = MAX_VIEWS, rank_options: RankOptions = DEFAULT_OPTIONS,
                 model_in_background: bool = False, store_images: bool = True, consistency: str = STRICT) -> None:
        self.store: Store = store if store is not None else SqliteStore(storage_path)
        # False: images are stored as a text note (`memory.ingest.images`).
        self.store_images = store_images
        self._model = BackgroundModel(self._model_ready) if model_in_background else None
        self.rank_options = rank_options
        self.consistency = _check_consistency(consistency)
        self._embedding_model = embedding_model
        self._embedding_model_dir = embedding_model_dir
        self.embedder: Embedder | None = embedder
        # Turns being planned or committed: background embedding and snapshots wait for a quiet moment.
        self._activity = TurnActivity()
        self._views = Views(self.store, max_views, quiet=self._activity.quiet)
        # A client resends its history every call: its messages are hashed and counted once.
        self.memo = MessageMemo(MESSAGE_MEMO)
        # A tool loop's compactions are replayed on every request: their renderings are remembered.
        self.compact_memo = CompactMemo()
        # Stored transcripts by session, current while their high-water mark is (`memory.turn.transcripts`).
        self.transcripts = TranscriptCache()
        # The fixed context each session's prompts carry whole, and how an updated one goes up.
        self.fixed_anchors = FixedAnchors()
        self.fixed_policy = FixedPolicy()
        self._open_lock = asyncio.Lock()
        self._opened = False
        self._embeddings = EmbeddingQueue(self.store, lambda: self.embedder, self._fresh_view, self._activity.quiet)

    async def __aenter__(self) -> Runtime:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def open(self) -> None:
        """Open the store (running migrations) and load the embedding model; with
        `model_in_background`, the model loads in a worker thread instead, and ranking is lexical
        until it is ready (`model_note`, `wait_for_model`)."""
        async with self._open_lock:
            if self._opened:
                return
            wanted = self.embedder is None and (self._embedding_model or DEFAULT_MODEL).lower() != "none"
            # The stored counts' tokeniser (reading its 200k ranks: ~0.4 s of CPU) loads beside the
            # model and the store, not in the first compile after a restart.
            tokeniser = asyncio.ensure_future(asyncio.to_thread(stored_counter))
            if wanted and self._model is not None:
                self._model.start(self._embedding_model or DEFAULT_MODEL, lambda: load_embedder(self._embedding_model, self._embedding_model_dir))
            elif wanted:
                self.embedder = await asyncio.to_thread(load_embedder, self._embedding_model, self._embedding_model_dir)
            if self.embedder is None and not wanted:
                log.warning("memory: embeddings are OFF (embedding model 'none'); retrieval is lexical only")
            await self.store.open()
            await tokeniser
            self._opened = True

    @property
    def embeds(self) -> bool:
        """Whether what is stored gets vectors: a model is loaded, or loading in the background
        (what is stored meanwhile, pair probes included, is embedded once it is ready)."""
        return self.embedder is not None or (self._model is not None and self._model.loading)

    @property
    def model_note(self) -> str | None:
        """Why ranking is lexical for now (the model is loading, or failed to load); None otherwise."""
        return self._model.note() if self._model is not None else None

    async def wait_for_model(self) -> None:
        """Return once a model loading in the background is ready (or failed to load)."""
        if self._model is not None:
            await self._model.wait()

    def _model_ready(self, embedder: Embedder) -> None:
        # Views built meanwhile have no vectors; `_fresh_view` rebuilds each at its next use, and
        # the sessions they belong to are embedded now, in the background.
        touched = list(self._views)
        self.embedder = embedder
        for session_id in touched:
            self.embed_soon(session_id)

    async def close(self) -> None:
        if self._model is not None:
            await self._model.stop()
        await self._embeddings.close()
        await self._views.stop()
        if self._opened:
            await self._views.save(self.embedder)  # a quiet moment: the next restart reads these
        await self.store.close()
        self._views.clear()
        self._opened = False

    @property
    def embedding_name(self) -> str:
        return self.embedder.name if self.embedder is not None else "none"

    @property
    def compile_embed_limit(self) -> int | None:
        """Characters of not-yet-embedded chunks a compile embeds before it ranks (None: all)."""
        return None if self.consistency == STRICT else EMBED_NOW_CHARS

    def session(self, session_id: str) -> Session:
        """A handle on one session (nothing is stored until something is ingested)."""
        return Session(self, _check_session_id(session_id))

    def busy(self) -> AbstractAsyncContextManager[None]:
        """Turn work (planning or committing a turn) in progress while the block runs."""
        return self._activity.busy()

    def tokens_for(self, counter: TiktokenCounter) -> TiktokenCounter:
        """`counter` for one request, its `message_tokens` remembered (see `memory.recall.memo`)."""
        return self.memo.counter(counter)

    async def list_sessions(self) -> list[SessionSummary]:
        await self.open()
        return await self.store.list_sessions()

    async def page_sessions(self, prefix: str = "", after: str | None = None, limit: int = 100, contains: str = "") -> list[SessionSummary]:
        """At most `limit` sessions whose id starts with `prefix` and whose
        rest contains `contains` (case-insensitive), in id order, after the id `after`."""
        if isinstance(limit, bool) or not isinstance(limit, int) or limit <= 0:
            raise InvalidArgumentError("limit must be a positive integer")
        await self.open()
        return await self.store.page_sessions(prefix, after, limit, contains)

    async def health(self) -> str | None:
        """None while memory can store what it is given; otherwise the reason it cannot."""
        try:
            await self.open()
            return await self.store.health()
        except MemoryRuntimeError as exc:
            return str(exc)

    async def resolve_session(self, messages: Sequence[dict[str, Any]], scope: str = "") -> str | None:
        """The stored session (within `scope`) this message list continues: the one whose whole
        transcript is the longest prefix of `messages`; else the one session that holds
        `messages` (two messages or more) followed only by the reply to its last turn: a retry of
        that turn. The stored conversation may start after the client's fixed head (a few-shot
        exchange, context messages: see `memory.turn.align.fixed_context`), and a transcript stored
        under the older hash formula is found by it."""
        await self.open()
        convo = [m for m in messages if isinstance(m, dict) and m.get("role") not in SYSTEM_ROLES]
        hashes = [self.memo.hash(m) for m in convo]
        chain = chain_hashes(hashes)
        found = await self.store.find_session_by_head(scope, chain)
        if found is not None or len(chain) < 2:
            # A lone first message is a new conversation even if another one opened the same way.
            return found
        roles = [str(m.get("role")) for m in convo]
        tail = tail_start(roles, {i for i, m in enumerate(convo) if is_observation(m)})
        head = leading_context(roles, {i for i, m in enumerate(convo) if is_tagged_context(m)})
        for k in range(max(1, head), min(tail, FIXED_HEAD_MAX) + 1):
            # Two messages at least: a lone message matches nothing (as above).
            found = await self.store.find_session_by_head(scope, chain_hashes(hashes[k:])[1:])
            if found is not None:
                return found
        legacy = [legacy_message_hash(m) for m in convo]
        if legacy != hashes:
            found = await self.store.find_session_by_head(scope, chain_hashes(legacy))
            if found is not None:
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
        """Erase a session for good (rows, full-text index, vectors only it used; deleted content
        overwritten with zeros and free pages returned, without rewriting the rest of the file)."""
        return bool(await self.delete_sessions([session_id]))

    async def delete_sessions(self, session_ids: Sequence[str]) -> list[str]:
        """Erase several sessions in one unit; returns the ids that existed."""
        ids = [_check_session_id(s) for s in session_ids]
        await self.open()
        async with AsyncExitStack() as stack:
            for sid in sorted(set(ids)):  # a fixed order: two erasers never wait on each other
                await stack.enter_async_context(self.store.session_lock(sid))
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
                await stack.enter_async_context(self.store.session_lock(sid))
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

    async def view(self, session_id: str, query: str | None = None, embed_limit: int | None = EMBED_NOW_CHARS,
                   wait: bool = True) -> tuple[SessionView, np.ndarray | None]:
        """The up-to-date in-process view of a session, and the embedding of `query` (computed in
        the same batch as missing chunks). At most `embed_limit` characters of missing chunks are
        embedded now, newest first (None: all of them); the rest are left to a background task.
        Chunks another task is embedding right now are awaited, or with `wait=False` left to rank
        by their words this time. The caller holds the session's lock."""
        view = await self._fresh_view(session_id)
        return view, await self.embed_for(session_id, view, query, embed_limit, wait)

    async def loaded_view(self, session_id: str) -> SessionView:
        """The up-to-date view of a session without embedding anything now (what is missing is
        left to the background). The caller holds the session's lock."""
        view = await self._fresh_view(session_id)
        if view.missing:
            self.embed_soon(session_id)
        return view

    async def embed_for(self, session_id: str, view: SessionView, query: str | None, embed_limit: int | None = EMBED_NOW_CHARS,
                        wait: bool = True) -> np.ndarray | None:
        """Embed `query` and what `view` misses (see `view`); the caller holds the session's lock."""
        qvec: np.ndarray | None = None
        query = query if query and query.strip() else None
        # A view built before the model was ready ranks by words this once.
        if self.embedder is not None and view.dim == self.embedder.dim and (view.missing or query):
            qvec = await self._embeddings.fill(view, query, embed_limit, wait)
            if view.missing:
                self.embed_soon(session_id)
        return qvec

    async def _fresh_view(self, session_id: str) -> SessionView:
        # The embedder is read once: a model loading in the background may arrive meanwhile.
        return await self._views.fresh(session_id, self.embedder)

    def embed_soon(self, session_id: str) -> None:
        """Embed a session's new chunks in the background, so the next compile finds them ready."""
        self._embeddings.soon(session_id)


def create_runtime(storage_path: str | Path = "./.memory.sqlite", embedding_model: str | None = DEFAULT_MODEL,
                   embedding_model_dir: str | Path | None = None, embedder: Embedder | None = None,
                   rank_options: RankOptions = DEFAULT_OPTIONS, storage_url: str | None = None, model_in_background: bool = False,
                   store_images: bool = True, consistency: str = STRICT) -> Runtime:
    """Create a runtime over one SQLite file, or over a PostgreSQL database shared by several
    processes when `storage_url` (postgresql://user@host:port/db) is given (`storage_path` is then
    ignored; needs the `postgres` extra). `embedding_model` is a fastembed model name (default
    all-MiniLM-L6-v2, provisioned locally) or "none" for lexical-only retrieval; `embedding_model_dir`
    points at a local model folder. Nothing is downloaded. `rank_options` switches ranking stages
    off (for ablations; the default runs them all). `model_in_background` opens at once and ranks
    lexically until the model has loaded in a worker thread (a server answering from its first
    second), instead of loading it before `open` returns. `store_images=False` stores a text note in
    place of every image (`memory.ingest.images`). `consistency` ("strict", the default, or
    "bounded") trades a compile's view of what was just ingested against its latency (see
    `Runtime`)."""
    return Runtime(storage_path, embedding_model, embedding_model_dir, embedder, store=store_for(storage_path, storage_url),
                   rank_options=rank_options, model_in_background=model_in_background, store_images=store_images,
                   consistency=_check_consistency(consistency))
