"""`Session`: one conversation's memory — ingest, compile, and the turn protocol the proxy uses.

Every read-decide-write sequence of a session runs under the store's session lock (one lock layer:
in-process for SQLite, cross-process where the store is shared). CPU-bound work (hashing,
chunking, ranking, layout) runs in worker threads so the event loop keeps serving other requests.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from memory.errors import InvalidArgumentError, InvalidEventError, SessionNotFoundError
from memory.host import SessionHost
from memory.ingest.events import Event, parse_event
from memory.ingest.images import event_without_images
from memory.ingest.ingest import add_pair_probes, apply_state, precompute, prepare_events, rebuild_state
from memory.ingest.transcript import chain_hashes, message_text, message_to_event
from memory.prompt.compiler import CompileInput, CompileResult, assemble
from memory.prompt.policy import LayoutPolicy
from memory.prompt.state import extract_lines, state_as_dict
from memory.recall.retrieval import CANDIDATES, fts_query, is_change_query, rank_chunks
from memory.recall.subqueries import sub_query_lists
from memory.recall.tokens import get_counter
from memory.records import TranscriptEntry
from memory.store.protocol import StoreTx
from memory.turn.compact import Rewrite
from memory.turn.protocol import INLINE_CHARS, INLINE_MESSAGES, TurnProtocol, check_budget, checked_messages, off_loop_unless, parse_messages
from memory.turn.room import Budget
from memory.turn.transcripts import TranscriptCache
from memory.turn.turns import Request, TurnPlan, align_request, in_formula_of, query_text
from memory.turn.usage import Usage, totals_dict


__all__ = ["Session", "SyncResult"]

_CHUNKING_COUNTER = "gpt-4o-mini"


@dataclass(frozen=True)
class SyncResult:
    """How a resent message list related to what was stored: the matched prefix and what was new."""

    common_prefix: int
    stored: int




class Session:
    """One conversation's memory. All methods are coroutines; see the README for the event types."""

    def __init__(self, runtime: SessionHost, session_id: str) -> None:
        self.runtime = runtime
        self.id = session_id
        self._turns = TurnProtocol(runtime, session_id, self._write)

    @property
    def _store(self):  # type: ignore[no-untyped-def]
        return self.runtime.store

    # -- writing -------------------------------------------------------------------------------
    async def ingest(self, event: dict[str, Any]) -> int:
        """Validate and store one event; returns its event id. Raises `InvalidEventError` (nothing
        stored) for an unknown type, missing or non-string content, or a malformed payload."""
        return (await self.ingest_many([event]))[0]

    async def ingest_many(self, events: Sequence[dict[str, Any]]) -> list[int]:
        """Validate every event first, then store them all in one transaction."""
        if isinstance(events, (str, bytes, dict)) or not isinstance(events, Sequence):
            raise InvalidEventError("ingest_many takes a list of events")
        parsed = await asyncio.to_thread(lambda: [parse_event(e) for e in events])
        await self.runtime.open()
        async with self._store.session_lock(self.id):
            ids = await self._write(parsed, keep=None)
        self.runtime.embed_soon(self.id)
        return ids

    async def _write(self, parsed: list[Event], keep: int | None, scope: str = "", transcript: list[TranscriptEntry] | None = None,
                     then: Callable[[StoreTx], Awaitable[None]] | None = None) -> list[int]:
        """Store `parsed` in one transaction. Message events extend the transcript after position
        `keep` (None: at its end); what stood there leaves the transcript (detached), and state
        that came from it is rebuilt. `transcript` is the stored one when the caller read it under
        the session's lock (saves reading it again); `then` writes more in the same transaction."""
        count = get_counter(_CHUNKING_COUNTER).count
        if not self.runtime.store_images:
            parsed = [event_without_images(e) for e in parsed]
        small = len(parsed) <= INLINE_MESSAGES and sum(len(e.content) for e in parsed) <= INLINE_CHARS
        pre = await off_loop_unless(small, precompute, parsed, count)
        # The store turns its driver's errors into StorageError; the domain never sees sqlite3 or psycopg.
        async with self._store.transaction() as tx:
            await tx.ensure_session(self.id, scope)
            if transcript is None:
                transcript = await tx.transcript(self.id)
            base = transcript
            start = len(transcript) if keep is None else keep
            rebuild = False
            if start < len(transcript):
                detached = await tx.detach_from(self.id, start)
                rebuild = any(extract_lines(text) for _, text in detached)
                transcript = transcript[:start]
            rows, message_idx = await prepare_events(tx, self.id, parsed, count, pre)
            ids = await tx.add_events(self.id, rows)
            chat = [i for i in message_idx if rows[i].role in ("user", "assistant")]
            if message_idx:
                entries = [(rows[i].message_hash or "", ids[i]) for i in message_idx]
                chain = chain_hashes([h for h, _ in entries], transcript[-1].chain_hash if transcript else None)
                await tx.replace_transcript(self.id, start, [(start + n, h, chain[n], eid) for n, (h, eid) in enumerate(entries)],
                                            chain[-1])
                transcript = transcript + [TranscriptEntry(start + n, h, chain[n], eid, rows[i].role or "user")
                                           for n, ((h, eid), i) in enumerate(zip(entries, message_idx, strict=True))]
            if rebuild:
                await rebuild_state(tx, self.id)
            else:
                for i in chat:
                    await apply_state(tx, self.id, rows[i].content, ids[i])
            if self.runtime.embeds:
                await add_pair_probes(tx, self.id, [ids[i] for i in chat], [rows[i].content for i in chat])
            if then is not None:
                await then(tx)
            mark = await TranscriptCache.mark(tx, self.id)
        self.runtime.transcripts.wrote(self.id, base, transcript, mark)  # the next turn need not read it again
        return [ids[i] for i in range(len(rows)) if rows[i].parent_index is None]

    async def sync_messages(self, messages: Sequence[dict[str, Any]], scope: str = "") -> SyncResult:
        """Store what is new in a resent OpenAI message list, aligned with the stored transcript
        (see `memory.turn.align`): a resent history stores only its new messages, an edit detaches the
        abandoned branch, a repeated request stores nothing. System/developer messages are not
        stored."""
        request = await asyncio.to_thread(Request.of, checked_messages(messages), self.runtime.memo.hash)
        await self.runtime.open()
        async with self._store.session_lock(self.id):
            transcript = await self._store.transcript(self.id)
            request = in_formula_of(transcript, request)
            aligned = align_request(transcript, request, named=True)
            new = [request.convo(i) for i in range(aligned.alignment.offset, len(request.hashes))]
            if not new:
                return SyncResult(aligned.keep, 0)
            parsed = await asyncio.to_thread(parse_messages, new, request.hashes[aligned.alignment.offset:])
            await self._write(parsed, keep=aligned.keep, scope=scope)
        self.runtime.embed_soon(self.id)
        return SyncResult(aligned.keep, len(new))

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

    # -- turns (what the proxy does per request) -----------------------------------------------
    async def prepare_turn(self, messages: Sequence[dict[str, Any]], budget_tokens: int | Budget, model: str = "gpt-4o-mini",
                           scope: str = "", named: bool = True, policy: LayoutPolicy | str = "cache",
                           resume_at: int | None = None, rewrite: Rewrite | None = None,
                           tools: Sequence[dict[str, Any]] | None = None) -> TurnPlan:
        """Plan the prompt for one request of a client's conversation, within `budget_tokens`;
        the live tail is stored by `commit_turn` once the provider has answered. The arguments are
        described at `memory.turn.protocol.TurnProtocol.prepare_turn`."""
        return await self._turns.prepare_turn(messages, budget_tokens, model, scope, named, policy, resume_at, rewrite, tools)

    async def commit_turn(self, plan: TurnPlan, reply: dict[str, Any] | None, usage: Usage | None = None,
                          response_id: str | None = None, items: Sequence[tuple[str, dict[str, Any]]] = ()) -> None:
        """Record a turn the provider answered (`memory.turn.protocol.TurnProtocol.commit_turn`):
        the live tail and the reply join the transcript, the frame and the turn's tokens are kept."""
        await self._turns.commit_turn(plan, reply, usage, response_id, items)

    # -- reading -------------------------------------------------------------------------------
    async def compile(self, user_message: str | dict[str, Any] | list[dict[str, Any]], budget_tokens: int,
                      model: str = "gpt-4o-mini", system: str | list[dict[str, Any]] | None = None,
                      remember: bool = False) -> CompileResult:
        """Compile the prompt for the next call: system message(s), state, recent turns, retrieved
        evidence and the new user message, never above `budget_tokens` as counted by the
        provider's formula. Read-only (the user message is not stored) and deterministic: under the
        runtime's default `consistency="strict"` it ranks every chunk ingested before it by meaning
        too (embedding what the background has not yet). `user_message` may be a string, one message, or the live tail of messages (kept verbatim)."""
        check_budget(budget_tokens)
        counter = self.runtime.tokens_for(get_counter(model))  # the layout counts its messages once each
        tail = _as_messages(user_message, "user")
        system_msgs = _as_messages(system, "system") if system is not None else []
        query = query_text(tail)
        await self.runtime.open()
        async with self._store.session_lock(self.id):
            # Strict (the default): every chunk ingested before this call is embedded and ranked.
            view, qvec = await self.runtime.view(self.id, query, embed_limit=self.runtime.compile_embed_limit)
            pool = max(2 * CANDIDATES, budget_tokens // 8)
            lexical = await self._store.bm25(self.id, fts_query(query), pool)
            # A question naming several people is ranked once per name too (`memory.recall.subqueries`).
            parts = await sub_query_lists(query, self.runtime.rank_options, lambda q: self._store.bm25(self.id, q, pool),
                                          lambda q: self.runtime.embed_for(self.id, view, q, embed_limit=0, wait=False))
            state = await self._store.state_items(self.id)

            def build() -> CompileResult:
                ranked = rank_chunks(view, lexical, qvec, change_query=is_change_query(query), candidates=pool, query=query,
                                     parts=parts, options=self.runtime.rank_options)
                return assemble(CompileInput(self.id, model, budget_tokens, system_msgs, tail, query, state, ranked), view, counter)

            result = await asyncio.to_thread(build)
            if remember and await self._store.session_exists(self.id):
                async with self._store.transaction() as tx:
                    await tx.save_manifest(self.id, json.dumps(result.manifest, ensure_ascii=False))
        return result

    async def find_items(self, item_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        """Stored wire items of this session by id (those it has), as recorded by `commit_turn`."""
        await self.runtime.open()
        found = await self._store.find_items(self.id, list(item_ids))
        return {k: json.loads(v) for k, v in found.items()}

    async def flush(self) -> None:
        """Embed every stored chunk that has no vector yet (what a strict compile does first; a
        bounded one embeds a bounded batch and leaves the rest to the background)."""
        await self.runtime.open()
        async with self._store.session_lock(self.id):
            await self.runtime.view(self.id, embed_limit=None)

    async def exists(self) -> bool:
        await self.runtime.open()
        return bool(await self._store.session_exists(self.id))

    async def state(self, include_inactive: bool = False) -> dict[str, list[dict[str, Any]]]:
        """Decisions, constraints, open questions and glossary, each item with its label, text and
        the events it came from. Superseded and closed items are left out unless asked for."""
        await self.runtime.open()
        return state_as_dict(await self._store.state_items(self.id), include_inactive)

    async def usage(self) -> dict[str, Any]:
        """Totals over the turns forwarded for this session: tokens the client sent, tokens
        forwarded, and what the provider reported (prompt, cached, completion)."""
        await self.runtime.open()
        return totals_dict(await self._store.usage_totals(self.id))

    async def info(self) -> dict[str, Any]:
        await self.runtime.open()
        summary = next(iter(await self._store.list_sessions(self.id)), None)
        counts = {"events": 0, "messages": 0, "artifacts": 0, "chunks": 0}
        if summary is not None:
            counts = {"events": summary.events, "messages": summary.messages, "artifacts": summary.artifacts, "chunks": summary.chunks}
        return {"id": self.id, "exists": summary is not None, "counts": counts, "state": await self.state(),
                "usage": await self.usage(),
                "created_at": summary.created_at if summary else None, "updated_at": summary.updated_at if summary else None}

    async def last_manifest(self) -> dict[str, Any] | None:
        await self.runtime.open()
        raw = await self._store.last_manifest(self.id)
        return json.loads(raw) if raw else None

    async def export(self) -> dict[str, Any]:
        """Everything stored for this session, as JSON-ready data (vectors excluded). Raises
        `SessionNotFoundError` when nothing is stored under this id."""
        await self.runtime.open()
        if not await self._store.session_exists(self.id):
            raise SessionNotFoundError(f"no session {self.id!r}")
        rows = await self._store.export_rows(self.id)
        for event in rows["events"]:
            event["payload"] = json.loads(event["payload"])
        for item in rows["state_items"]:
            item["source_events"] = json.loads(item["source_events"])
        for frame in rows.get("frames", []):
            frame["base"], frame["items"] = json.loads(frame["base"]), json.loads(frame["items"])
        for turn in rows.get("turns", []):
            turn["evidence"] = json.loads(turn["evidence"]) if turn["evidence"] else None
        return {"session_id": self.id, **rows, "state": await self.state(include_inactive=True), "usage": await self.usage()}


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
