"""The turn protocol: what the proxy does per request, for one session.

`TurnProtocol.prepare_turn` aligns a request with the stored transcript (`memory.turn.align`),
stores the history it brought that memory did not hold yet, and plans the prompt
(`memory.turn.turns`, laid out by `memory.prompt.layout`), without storing the live tail;
`TurnProtocol.commit_turn` records the turn once the provider has answered: the live tail and the
reply join the transcript, and the frame, the manifest and the usage are kept. Both run under the
session's lock and mark the runtime busy (`memory.recall.quiet`), so background embedding waits
for a quiet moment. `memory.session.Session` exposes them as `prepare_turn` and `commit_turn`;
messages are written through the session's own writer (`Writer`), the one `ingest` uses.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace
from typing import Any, Protocol

import numpy as np

from memory.errors import InvalidArgumentError, InvalidEventError, StorageError
from memory.host import SessionHost
from memory.ingest.events import Event, parse_event
from memory.ingest.images import without_images
from memory.ingest.redact import redact_value
from memory.ingest.transcript import SYSTEM_ROLES, message_to_event
from memory.prompt.evidence import unit_message
from memory.prompt.layout import fixed_over_budget, needs_memory
from memory.prompt.need import plain_chat
from memory.prompt.policy import LayoutPolicy, get_policy
from memory.records import FrameRecord, StateItem, TranscriptEntry, TurnRecord
from memory.recall.embedding_queue import EMBED_NOW_CHARS
from memory.recall.retrieval import CANDIDATES, Hits, fts_query, is_change_query, rank_chunks
from memory.recall.subqueries import sub_query_lists
from memory.recall.tokens import get_counter
from memory.store.protocol import StoreTx
from memory.turn.compact import Rewrite
from memory.turn.room import Budget, tools_tokens
from memory.turn.usage import Usage
from memory.turn.turns import Request, TurnInputs, TurnPlan, align_request, build_plan, classify_fixed, turn_inputs, turn_record

__all__ = ["TurnProtocol", "Writer", "parse_messages", "check_budget", "checked_messages", "small_messages", "off_loop_unless",
           "INLINE_CHARS", "INLINE_MESSAGES", "INLINE_UNITS"]

# Work this small runs on the event loop: with one GIL a worker thread buys no parallelism, only a
# loop that keeps serving meanwhile, which matters for milliseconds of work, not for the tens of
# microseconds a turn of a chat-sized session takes; each hand-off cost more CPU than that (a
# queue, two wake-ups) and was ~10% of the proxy's samples under load. Larger requests and
# sessions still go to a thread.
INLINE_CHARS = 32_768  # characters of message content and tool-call arguments
INLINE_MESSAGES = 64
INLINE_UNITS = 2_000  # units of the session's view (ranking and layout grow with them)


class Writer(Protocol):
    """`Session._write`: store parsed events in one transaction (see there)."""

    def __call__(self, parsed: list[Event], keep: int | None, scope: str = "", transcript: list[TranscriptEntry] | None = None,
                 then: Callable[[StoreTx], Awaitable[None]] | None = None) -> Awaitable[list[int]]: ...


def parse_messages(messages: list[dict[str, Any]], hashes: list[str]) -> list[Event]:
    """The events of conversation messages (system roles have none), each with its hash."""
    events: list[Event] = []
    for m, h in zip(messages, hashes, strict=True):
        event = message_to_event(m)
        if event is not None:
            events.append(replace(parse_event(event), message_hash=h))
    return events


def small_messages(messages: Sequence[dict[str, Any]]) -> bool:
    """Whether hashing, parsing or chunking these messages is cheaper on the loop than a thread
    hand-off: few messages of plain-text content (an image or a part list goes to a thread)."""
    if len(messages) > INLINE_MESSAGES:
        return False
    chars = 0
    for m in messages:
        content = m.get("content")
        if isinstance(content, str):
            chars += len(content)
        elif content is not None:
            return False
        for call in m.get("tool_calls") or ():
            arguments = (call.get("function") or {}).get("arguments") if isinstance(call, dict) else None
            chars += len(arguments) if isinstance(arguments, str) else INLINE_CHARS
    return chars <= INLINE_CHARS


async def off_loop_unless(small: bool, fn: Callable[..., Any], *args: Any) -> Any:
    """`fn(*args)`, on the loop when `small`, else in a worker thread."""
    return fn(*args) if small else await asyncio.to_thread(fn, *args)


class TurnProtocol:
    """Prepare and commit the turns of one session (`host`'s session `session_id`)."""

    def __init__(self, host: SessionHost, session_id: str, write: Writer) -> None:
        self.host = host
        self.id = session_id
        self._write = write

    async def prepare_turn(self, messages: Sequence[dict[str, Any]], budget_tokens: int | Budget, model: str = "gpt-4o-mini",
                           scope: str = "", named: bool = True, policy: LayoutPolicy | str = "cache",
                           resume_at: int | None = None, rewrite: Rewrite | None = None,
                           tools: Sequence[dict[str, Any]] | None = None) -> TurnPlan:
        """Plan the prompt for one request of a client's conversation: align it with what is
        stored, store the history it brings that memory lacked, and lay the prompt out on the
        session's stable frame within `budget_tokens`. The live tail (the last user message and
        the tool calls after it) is not stored here: `commit_turn` does that once the provider
        has answered. `named` says the caller named the session (so a request that does not start
        where the conversation starts continues it: a stateless or sliding-window client);
        `policy` (see `memory.prompt.policy`) trades the provider's prompt cache against fresh evidence.
        `rewrite` puts a compacted live-tail message back in the client's wire form
        (`memory.turn.compact.Rewrite`; default: chat messages). `tools`: the tool definitions the
        request declares; they count toward the budget as part of the app's fixed part.
        `resume_at` says the messages continue the stored transcript from that position (a
        Responses API `previous_response_id`): the request is then memory's copy of the
        transcript up to there followed by `messages`, so a continuation from an earlier reply
        branches there, and a repeated one is a retry. A `Budget` may count only what memory
        controls (`memory.turn.room`); an integer counts the whole prompt."""
        check_budget(budget_tokens.tokens if isinstance(budget_tokens, Budget) else budget_tokens)
        layout_policy = get_policy(policy) if isinstance(policy, str) else policy
        counter = self.host.tokens_for(get_counter(model))  # every stage counts the same messages: once each
        checked = checked_messages(messages)
        small = small_messages(checked)
        request = await off_loop_unless(small, Request.of, checked, self.host.memo.hash)
        await self.host.open()
        store = self.host.store
        async with self.host.busy(), store.session_lock(self.id):
            await store.check_writable()
            transcript = await self.host.transcripts.read(store, self.id)
            if resume_at is not None:
                request = await self._resumed(request, transcript, resume_at)
                named = True
            request = classify_fixed(transcript, request, named)
            aligned = align_request(transcript, request, named)
            history_new = aligned.p - aligned.keep
            if history_new > 0:
                first = aligned.alignment.offset
                parsed = await off_loop_unless(small, parse_messages, [request.convo(i) for i in range(first, first + history_new)],
                                               request.hashes[first : first + history_new])
                await self._write(parsed, keep=aligned.keep, scope=scope, transcript=transcript)
                transcript = await self.host.transcripts.read(store, self.id)
                aligned = align_request(transcript, request, named)
            view = await self.host.loaded_view(self.id)
            small = small and len(view.units) <= INLINE_UNITS

            def lay_against_memory() -> tuple[TurnInputs, bool, bool]:
                inputs = turn_inputs(aligned, request, transcript, view, model, budget_tokens, counter,
                                     rewrite, self.host.compact_memo, tools_tokens=tools_tokens(tools, counter),
                                     placing=(self.host.fixed_anchors, f"{scope}\0{self.id}", self.host.fixed_policy))
                return (inputs, needs_memory(inputs.system, inputs.history, inputs.tail, inputs.budget, counter),
                        fixed_over_budget(inputs.system, inputs.tail, inputs.budget, counter))

            inputs, needed, over = await off_loop_unless(small, lay_against_memory)
            budget = inputs.budget  # the budget laid out in, in tokens
            query = inputs.query
            pool = max(2 * CANDIDATES, budget // 8)
            qvec: np.ndarray | None = None
            lexical: list[tuple[int, float]] = []
            parts: list[tuple[Hits, np.ndarray | None]] = []
            state: list[StateItem] = []
            frames: list[FrameRecord] = []
            reuse: TurnRecord | None = None
            if needed:  # else the whole conversation fits (or nothing but the tail can): no retrieval
                # The question is embedded while the store is read. What earlier turns left
                # unembedded (the previous reply) is the background's and ranks by its words this
                # once; a request that brought history memory lacked embeds a bounded batch of the
                # missing chunks too (newest first).
                embedding = asyncio.ensure_future(
                    self.host.embed_for(self.id, view, query, embed_limit=EMBED_NOW_CHARS if history_new > 0 else 0, wait=False))
                try:
                    lexical = await store.bm25(self.id, fts_query(query), pool)
                    state = await store.state_items(self.id)
                    frames = await store.frames(self.id)
                    # An identical earlier request (a retry), else the request that opened this turn.
                    reuse = await store.find_turn(self.id, inputs.key) or await store.find_turn(self.id, inputs.turn_key)
                except BaseException:
                    embedding.cancel()  # a failed read ends the turn: its question's vector is not awaited
                    await asyncio.gather(embedding, return_exceptions=True)
                    raise
                qvec = await embedding
                if plain_chat(inputs.tail, inputs.history_tools):  # a tool loop's words are not names
                    parts = await sub_query_lists(query, self.host.rank_options, lambda q: store.bm25(self.id, q, pool),
                                                  lambda q: self.host.embed_for(self.id, view, q, embed_limit=0, wait=False))
            elif over:  # over budget the state block still goes (`memory.prompt.layout`)
                state = await store.state_items(self.id)

            def build() -> TurnPlan:
                ranked = rank_chunks(view, lexical, qvec, change_query=is_change_query(query), candidates=pool, query=query,
                                     parts=parts, options=self.host.rank_options) if needed else []
                return build_plan(self.id, model, budget, request, named, scope, inputs, frames, reuse, ranked, state,
                                  view, counter, layout_policy)

            plan: TurnPlan = await off_loop_unless(small, build)
            return plan

    async def _resumed(self, request: Request, transcript: list[TranscriptEntry], resume_at: int) -> Request:
        """`request` behind memory's copies of transcript[:resume_at], which keep their stored
        hashes (a copy's text may differ from what was sent: secrets are redacted on storage)."""
        if isinstance(resume_at, bool) or not isinstance(resume_at, int) or not 0 <= resume_at <= len(transcript):
            raise InvalidArgumentError(f"resume_at must be a transcript position 0..{len(transcript)}")
        view = await self.host.loaded_view(self.id)  # only its units: nothing to embed for this
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
        stored_items = await asyncio.to_thread(_redacted_items, items, self.host.store_images) if items else []
        store = self.host.store
        await self.host.open()
        async with self.host.busy(), store.session_lock(self.id):
            transcript = await self.host.transcripts.read(store, self.id)
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
                parsed = await off_loop_unless(small_messages(new), parse_messages, new, hashes)
                await self._write(parsed, keep=aligned.keep, scope=plan.scope, transcript=transcript, then=record)
            else:
                async with store.transaction() as tx:
                    await tx.ensure_session(self.id, plan.scope)
                    await record(tx)
        if new:
            self.host.embed_soon(self.id)


def _redacted_items(items: Sequence[tuple[str, dict[str, Any]]], images: bool = True) -> list[tuple[str, str]]:
    found: Counter[str] = Counter()
    return [(str(item_id), json.dumps(redact_value(item if images else without_images(item), found), ensure_ascii=False))
            for item_id, item in items]


def check_budget(budget_tokens: Any) -> None:
    if isinstance(budget_tokens, bool) or not isinstance(budget_tokens, int):
        raise InvalidArgumentError("budget_tokens must be an integer")
    if budget_tokens < 0:
        raise InvalidArgumentError("budget_tokens must not be negative")


def checked_messages(messages: Any) -> list[dict[str, Any]]:
    if not isinstance(messages, Sequence) or isinstance(messages, (str, bytes)):
        raise InvalidEventError("messages must be a list of message objects")
    for m in messages:
        if not isinstance(m, dict):
            raise InvalidEventError("each message must be an object")
        if m.get("role") not in SYSTEM_ROLES:
            message_to_event(m)  # raises InvalidEventError on an unsupported role or content
    return list(messages)
