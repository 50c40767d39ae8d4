"""`Session`: one conversation's memory — ingest, compile, and the turn protocol the proxy uses.

Every read-decide-write sequence of a session runs under the store's session lock (one lock layer:
in-process for SQLite, cross-process where the store is shared). CPU-bound work (hashing,
chunking, ranking, layout) runs in worker threads so the event loop keeps serving other requests.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from memory.prompt.compiler import CompileInput, CompileResult, assemble
from memory.host import SessionHost
from memory.errors import InvalidArgumentError, InvalidEventError, SessionNotFoundError, StorageError
from memory.ingest.events import Event, parse_event
from memory.prompt.evidence import unit_message
from memory.ingest.ingest import add_pair_probes, apply_state, precompute, prepare_events, rebuild_state
from memory.prompt.layout import fixed_over_budget, needs_memory
from memory.prompt.policy import LayoutPolicy, get_policy
from memory.records import FrameRecord, StateItem, TranscriptEntry, TurnRecord
from memory.ingest.images import event_without_images, without_images
from memory.ingest.redact import redact_value
from memory.recall.retrieval import CANDIDATES, fts_query, is_change_query, rank_chunks
from memory.prompt.state import extract_lines, state_as_dict
from memory.store.protocol import StoreTx
from memory.recall.tokens import get_counter
from memory.ingest.transcript import SYSTEM_ROLES, chain_hashes, message_text, message_to_event
from memory.turn.compact import Rewrite
from memory.turn.turns import (Request, TurnInputs, TurnPlan, Usage, align_request, build_plan, classify_fixed, in_formula_of, query_text,
                    totals_dict, turn_inputs, turn_record)


__all__ = ["Session", "SyncResult"]

_CHUNKING_COUNTER = "gpt-4o-mini"


@dataclass(frozen=True)
class SyncResult:
    """How a resent message list related to what was stored: the matched prefix and what was new."""

    common_prefix: int
    stored: int


def _parse_messages(messages: list[dict[str, Any]], hashes: list[str]) -> list[Event]:
    events: list[Event] = []
    for m, h in zip(messages, hashes, strict=True):
        event = message_to_event(m)
        if event is not None:
            events.append(replace(parse_event(event), message_hash=h))
    return events


class Session:
    """One conversation's memory. All methods are coroutines; see the README for the event types."""

    def __init__(self, runtime: SessionHost, session_id: str) -> None:
        self.runtime = runtime
        self.id = session_id

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
        pre = await asyncio.to_thread(precompute, parsed, count)
        # The store turns its driver's errors into StorageError; the domain never sees sqlite3 or psycopg.
        async with self._store.transaction() as tx:
            await tx.ensure_session(self.id, scope)
            if transcript is None:
                transcript = await tx.transcript(self.id)
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
            if rebuild:
                await rebuild_state(tx, self.id)
            else:
                for i in chat:
                    await apply_state(tx, self.id, rows[i].content, ids[i])
            if self.runtime.embeds:
                await add_pair_probes(tx, self.id, [ids[i] for i in chat], [rows[i].content for i in chat])
            if then is not None:
                await then(tx)
        return [ids[i] for i in range(len(rows)) if rows[i].parent_index is None]

    async def sync_messages(self, messages: Sequence[dict[str, Any]], scope: str = "") -> SyncResult:
        """Store what is new in a resent OpenAI message list, aligned with the stored transcript
        (see `memory.turn.align`): a resent history stores only its new messages, an edit detaches the
        abandoned branch, a repeated request stores nothing. System/developer messages are not
        stored."""
        request = await asyncio.to_thread(Request.of, _checked(messages), self.runtime.memo.hash)
        await self.runtime.open()
        async with self._store.session_lock(self.id):
            transcript = await self._store.transcript(self.id)
            request = in_formula_of(transcript, request)
            aligned = align_request(transcript, request, named=True)
            new = [request.convo(i) for i in range(aligned.alignment.offset, len(request.hashes))]
            if not new:
                return SyncResult(aligned.keep, 0)
            parsed = await asyncio.to_thread(_parse_messages, new, request.hashes[aligned.alignment.offset:])
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
    async def prepare_turn(self, messages: Sequence[dict[str, Any]], budget_tokens: int, model: str = "gpt-4o-mini",
                           scope: str = "", named: bool = True, policy: LayoutPolicy | str = "cache",
                           resume_at: int | None = None, rewrite: Rewrite | None = None) -> TurnPlan:
        """Plan the prompt for one request of a client's conversation: align it with what is
        stored, store the history it brings that memory lacked, and lay the prompt out on the
        session's stable frame within `budget_tokens`. The live tail (the last user message and
        the tool calls after it) is not stored here: `commit_turn` does that once the provider
        has answered. `named` says the caller named the session (so a request that does not start
        where the conversation starts continues it: a stateless or sliding-window client);
        `policy` (see `memory.prompt.policy`) trades the provider's prompt cache against fresh evidence.
        `rewrite` puts a compacted live-tail message back in the client's wire form
        (`memory.turn.compact.Rewrite`; default: chat messages).
        `resume_at` says the messages continue the stored transcript from that position (a
        Responses API `previous_response_id`): the request is then memory's copy of the
        transcript up to there followed by `messages`, so a continuation from an earlier reply
        branches there, and a repeated one is a retry."""
        _check_budget(budget_tokens)
        layout_policy = get_policy(policy) if isinstance(policy, str) else policy
        counter = get_counter(model)
        request = await asyncio.to_thread(Request.of, _checked(messages), self.runtime.memo.hash)
        await self.runtime.open()
        store = self._store
        async with store.session_lock(self.id):
            await store.check_writable()
            transcript = await store.transcript(self.id)
            if resume_at is not None:
                request = await self._resumed(request, transcript, resume_at)
                named = True
            request = classify_fixed(transcript, request, named)
            aligned = align_request(transcript, request, named)
            history_new = aligned.p - aligned.keep
            if history_new > 0:
                first = aligned.alignment.offset
                parsed = await asyncio.to_thread(_parse_messages, [request.convo(i) for i in range(first, first + history_new)],
                                                 request.hashes[first : first + history_new])
                await self._write(parsed, keep=aligned.keep, scope=scope, transcript=transcript)
                transcript = await store.transcript(self.id)
                aligned = align_request(transcript, request, named)
            view = await self.runtime.loaded_view(self.id)

            def lay_against_memory() -> tuple[TurnInputs, bool, bool]:
                inputs = turn_inputs(aligned, request, transcript, view, model, budget_tokens, self.runtime.tokens_for(counter),
                                     rewrite, self.runtime.compact_memo,
                                     placing=(self.runtime.fixed_anchors, f"{scope}\0{self.id}", self.runtime.fixed_policy))
                return (inputs, needs_memory(inputs.system, inputs.history, inputs.tail, inputs.budget, counter),
                        fixed_over_budget(inputs.system, inputs.tail, inputs.budget, counter))

            inputs, needed, over = await asyncio.to_thread(lay_against_memory)
            budget_tokens = inputs.budget
            query = inputs.query
            pool = max(2 * CANDIDATES, budget_tokens // 8)
            qvec: np.ndarray | None = None
            lexical: list[tuple[int, float]] = []
            state: list[StateItem] = []
            frames: list[FrameRecord] = []
            reuse: TurnRecord | None = None
            if needed:  # else the whole conversation fits (or nothing but the tail can): no retrieval
                # Chunks the background is embedding (the previous reply) rank by their words this once.
                qvec = await self.runtime.embed_for(self.id, view, query, wait=False)
                lexical = await store.bm25(self.id, fts_query(query), pool)
                state = await store.state_items(self.id)
                frames = await store.frames(self.id)
                reuse = await store.find_turn(self.id, inputs.key)
            elif over:  # over budget the state block still goes (`memory.prompt.layout`)
                state = await store.state_items(self.id)

            def build() -> TurnPlan:
                ranked = rank_chunks(view, lexical, qvec, change_query=is_change_query(query), candidates=pool,
                                     options=self.runtime.rank_options) if needed else []
                return build_plan(self.id, model, budget_tokens, request, named, scope, inputs, frames, reuse, ranked, state,
                                  view, counter, layout_policy)

            return await asyncio.to_thread(build)

    async def _resumed(self, request: Request, transcript: list[TranscriptEntry], resume_at: int) -> Request:
        """`request` behind memory's copies of transcript[:resume_at], which keep their stored
        hashes (a copy's text may differ from what was sent: secrets are redacted on storage)."""
        if isinstance(resume_at, bool) or not isinstance(resume_at, int) or not 0 <= resume_at <= len(transcript):
            raise InvalidArgumentError(f"resume_at must be a transcript position 0..{len(transcript)}")
        view = await self.runtime.loaded_view(self.id)  # only its units: nothing to embed for this
        prefix: list[dict[str, Any]] = []
        for entry in transcript[:resume_at]:
            unit = view.units.get(f"e{entry.event_id}")
            if unit is None:
                raise StorageError(f"transcript position {entry.pos} of session {self.id!r} has no live event")
            prefix.append(unit_message(unit))
        n = len(prefix)
        return Request(prefix + list(request.messages), list(range(n)) + [n + i for i in request.convo_index],
                       [e.msg_hash for e in transcript[:resume_at]] + list(request.hashes))

    async def commit_turn(self, plan: TurnPlan, reply: dict[str, Any] | None, usage: Usage | None = None,
                          response_id: str | None = None, items: Sequence[tuple[str, dict[str, Any]]] = ()) -> None:
        """Record a turn the provider answered: the live tail and the reply join the transcript
        (a retry's reply replaces the one it regenerates; the same reply again stores nothing), the
        frame the prompt used is kept for the next turn, and the turn's tokens are counted.
        `response_id` (the provider's id of this reply) is recorded with the transcript position
        the reply ends at, for `prepare_turn(resume_at=...)`; `items` (id, wire item) are kept,
        redacted, for later references to them."""
        usage = usage or Usage()
        stored_items = await asyncio.to_thread(_redacted_items, items, self.runtime.store_images)
        store = self._store
        await self.runtime.open()
        async with store.session_lock(self.id):
            transcript = await store.transcript(self.id)
            aligned = align_request(transcript, plan.request, plan.named)
            first = aligned.alignment.offset
            new = [plan.request.convo(i) for i in range(first, len(plan.request.hashes))]
            hashes = plan.request.hashes[first:]
            # Where the reply ends in the transcript once this turn is stored.
            end = aligned.keep + len(new)
            if reply is not None:
                reply_hash = Request.of([reply]).hashes[0]
                same_reply = not new and aligned.keep < len(transcript) and transcript[aligned.keep].msg_hash == reply_hash
                end += 1
                if not same_reply:
                    new, hashes = new + [reply], hashes + [reply_hash]
            frame = plan.layout.frame
            manifest = {**plan.result.manifest, "usage": {"prompt_tokens": usage.prompt_tokens, "cached_tokens": usage.cached_tokens,
                                                          "completion_tokens": usage.completion_tokens}}

            async def record(tx: StoreTx) -> None:
                frame_id = frame.id if frame is not None and frame.id else None
                if frame is not None and not frame.id and plan.layout.mode == "rebased":
                    frame_id = await tx.save_frame(self.id, frame)
                await tx.add_turn(self.id, turn_record(plan, frame_id, usage))
                await tx.save_manifest(self.id, json.dumps(manifest, ensure_ascii=False))
                if response_id is not None:
                    after = await tx.transcript(self.id)
                    if 0 < end <= len(after):
                        await tx.add_response(self.id, response_id, end, after[end - 1].chain_hash)
                if stored_items:
                    await tx.add_items(self.id, stored_items)

            # One transaction for the messages and the turn record.
            if new:
                parsed = await asyncio.to_thread(_parse_messages, new, hashes)
                await self._write(parsed, keep=aligned.keep, scope=plan.scope, transcript=transcript, then=record)
            else:
                async with store.transaction() as tx:
                    await tx.ensure_session(self.id, plan.scope)
                    await record(tx)
        if new:
            self.runtime.embed_soon(self.id)

    # -- reading -------------------------------------------------------------------------------
    async def compile(self, user_message: str | dict[str, Any] | list[dict[str, Any]], budget_tokens: int,
                      model: str = "gpt-4o-mini", system: str | list[dict[str, Any]] | None = None,
                      remember: bool = False) -> CompileResult:
        """Compile the prompt for the next call: system message(s), state, recent turns, retrieved
        evidence and the new user message, never above `budget_tokens` as counted by the
        provider's formula. Read-only (the user message is not stored) and deterministic: under the
        runtime's default `consistency="strict"` it ranks every chunk ingested before it by meaning
        too (embedding what the background has not yet). `user_message` may be a string, one message, or the live tail of messages (kept verbatim)."""
        _check_budget(budget_tokens)
        counter = get_counter(model)
        tail = _as_messages(user_message, "user")
        system_msgs = _as_messages(system, "system") if system is not None else []
        query = query_text(tail)
        await self.runtime.open()
        async with self._store.session_lock(self.id):
            # Strict (the default): every chunk ingested before this call is embedded and ranked.
            view, qvec = await self.runtime.view(self.id, query, embed_limit=self.runtime.compile_embed_limit)
            pool = max(2 * CANDIDATES, budget_tokens // 8)
            lexical = await self._store.bm25(self.id, fts_query(query), pool)
            state = await self._store.state_items(self.id)

            def build() -> CompileResult:
                ranked = rank_chunks(view, lexical, qvec, change_query=is_change_query(query), candidates=pool,
                                     options=self.runtime.rank_options)
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


def _redacted_items(items: Sequence[tuple[str, dict[str, Any]]], images: bool = True) -> list[tuple[str, str]]:
    found: Counter[str] = Counter()
    return [(str(item_id), json.dumps(redact_value(item if images else without_images(item), found), ensure_ascii=False))
            for item_id, item in items]


def _check_budget(budget_tokens: Any) -> None:
    if isinstance(budget_tokens, bool) or not isinstance(budget_tokens, int):
        raise InvalidArgumentError("budget_tokens must be an integer")
    if budget_tokens < 0:
        raise InvalidArgumentError("budget_tokens must not be negative")


def _checked(messages: Any) -> list[dict[str, Any]]:
    if not isinstance(messages, Sequence) or isinstance(messages, (str, bytes)):
        raise InvalidEventError("messages must be a list of message objects")
    for m in messages:
        if not isinstance(m, dict):
            raise InvalidEventError("each message must be an object")
        if m.get("role") not in SYSTEM_ROLES:
            message_to_event(m)  # raises InvalidEventError on an unsupported role or content
    return list(messages)


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
