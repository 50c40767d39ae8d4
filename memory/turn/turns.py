"""One forwarded turn of a conversation, its pure parts: the request, its plan and its record
(`memory.turn.protocol` runs the turn with the store).

`prepare_turn` aligns the request with the stored transcript (`memory.turn.align`), stores the history
the request brought that memory did not hold yet, and builds the prompt (`memory.prompt.layout`) from the
session's stored frame: the live tail goes upstream verbatim and exactly once, and consecutive
prompts keep a byte-identical prefix. Nothing of the live tail is stored here.

`commit_turn` runs once the provider has answered: it stores the live tail and the reply (a retry
replaces the reply it regenerates), the frame the prompt used, and a turn record with the tokens
sent, forwarded and cached. A call that fails is never committed, so it leaves nothing behind.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from memory.turn.align import (Alignment, align, fixed_context, is_observation, is_tagged_context, leading_context, stored_head,
                               tail_start)
from memory.turn.compact import CompactMemo, CompactPolicy, Compaction, Rewrite
from memory.turn.fixed import FixedAnchors, FixedPolicy, anchored
from memory.turn.history import memory_unit, turn_history
from memory.turn.usage import Usage
from memory.turn.room import PROMPT, Budget, compacted_tail, effective_budget, tail_room, tools_tokens
from memory.prompt.compiler import CompileResult, result_of
from memory.prompt.evidence import unit_message
from memory.recall.index import SessionView
from memory.prompt.frames import frame_serves
from memory.prompt.layout import Layout, LayoutInput, Line, build_layout
from memory.prompt.policy import LayoutPolicy
from memory.records import FrameRecord, StateItem, TranscriptEntry, TurnRecord
from memory.recall.retrieval import Scored
from memory.recall.tokens import REPLY_PRIMING_TOKENS, TiktokenCounter
from memory.ingest.transcript import GENESIS_CHAIN, SYSTEM_ROLES, legacy_message_hash, message_hash, message_text, strip_cache_control

__all__ = ["TurnPlan", "TurnInputs", "Request", "Aligned", "align_request", "classify_fixed", "in_formula_of", "turn_inputs",
           "build_plan", "request_key", "query_text", "turn_record", "tail_room", "effective_budget", "tools_tokens",
           "compacted_tail"]


@dataclass(frozen=True)
class Request:
    """A client's request split for alignment: its system messages, its conversation messages
    (with their hashes), the index in `messages` of each conversation message, and the indexes of
    the client's fixed context (`memory.turn.align.fixed_context`), which like system messages is
    sent every call and never stored as a turn. `leaves`: the hashes of the stored transcript's
    first positions that this request shows to be fixed context (`memory.turn.align.stored_head`);
    while the transcript starts with them, the request's conversation replaces it from its start."""

    messages: list[dict[str, Any]]
    convo_index: list[int]
    hashes: list[str]
    fixed: frozenset[int] = frozenset()
    leaves: tuple[str, ...] = ()

    @classmethod
    def of(cls, messages: Sequence[dict[str, Any]], hash_of: Callable[[dict[str, Any]], str] = message_hash) -> Request:
        """`hash_of` is `message_hash`, or a cache of it (`memory.recall.memo`)."""
        msgs = list(messages)
        index = [i for i, m in enumerate(msgs) if m.get("role") not in SYSTEM_ROLES]
        return cls(msgs, index, [hash_of(msgs[i]) for i in index])

    def convo(self, i: int) -> dict[str, Any]:
        return self.messages[self.convo_index[i]]

    def with_fixed(self, positions: Sequence[int], leaves: Sequence[str] = ()) -> Request:
        """The request with the conversation messages at `positions` read as fixed context (`leaves`: see the class)."""
        if not positions:
            return self
        drop = set(positions)
        keep = [i for i in range(len(self.hashes)) if i not in drop]
        return Request(self.messages, [self.convo_index[i] for i in keep], [self.hashes[i] for i in keep],
                       self.fixed | {self.convo_index[i] for i in drop}, tuple(leaves))

    def is_context(self, index: int) -> bool:
        """Whether `messages[index]` is sent every call rather than a turn (system or fixed)."""
        return index in self.fixed or self.messages[index].get("role") in SYSTEM_ROLES


@dataclass(frozen=True)
class TurnPlan:
    """A planned turn: the prompt to forward and what `commit_turn` needs to record it."""

    session_id: str
    model: str
    budget: int
    request: Request
    named: bool
    scope: str
    result: CompileResult
    layout: Layout
    tail_pos: int
    request_key: str
    sent_tokens: int
    # The request starts where the conversation starts (it carries the whole history).
    carries_history: bool = False
    # The live tail as compacted for this prompt (None: it went up verbatim).
    compaction: Compaction | None = None
    # The client's fixed context went up other than where and as it was sent (`memory.turn.fixed`).
    rearranged: bool = False

    @property
    def messages(self) -> list[dict[str, Any]]:
        return self.result.messages

    @property
    def mode(self) -> str:
        """The layout's mode, or `compacted` when the live tail went up compacted (and within budget);
        a whole-conversation prompt holding stored messages the request did not carry (a stateless or
        sliding-window client, or a named request that starts over) is `restored`; one whose fixed
        context went up anchored (`memory.turn.fixed`) is `anchored`: `full_history` always means
        the conversation exactly as sent."""
        if self.compaction is not None and self.compaction.compacted and self.layout.mode != "over_budget":
            return "compacted"
        if self.layout.mode == "full_history" and not self.carries_history and self.tail_pos > 0:
            return "restored"
        if self.layout.mode == "full_history" and self.rearranged:
            return "anchored"
        return self.layout.mode


def request_key(system: list[dict[str, Any]], anchor: str, tail: list[dict[str, Any]], model: str, budget: int) -> str:
    """What makes two requests the same request: the app's system messages, the conversation
    before the live tail (its chain hash), the live tail itself, the model and the budget. Cache
    breakpoints (`cache_control`) do not count: a client that moves its breakpoint along (Claude
    Code) still sends the same messages."""
    blob = json.dumps([system, anchor, tail, model, budget], sort_keys=True, ensure_ascii=False, default=str)
    # Copying the messages without the marks costs more than the hash (an agent's whole tool loop,
    # twice a request); where the name appears nowhere there is no mark, and the copy is the same.
    if "cache_control" in blob:
        blob = json.dumps([strip_cache_control(system), anchor, strip_cache_control(tail), model, budget], sort_keys=True, ensure_ascii=False,
                          default=str)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class Aligned:
    """The conversation as the request means it: stored positions [0, keep) then the request's new
    messages. `p` is where the live tail starts."""

    alignment: Alignment
    roles: list[str]
    p: int

    @property
    def keep(self) -> int:
        return self.alignment.keep


def classify_fixed(transcript: list[TranscriptEntry], request: Request, named: bool) -> Request:
    """`request` as `transcript` reads it: hashed the way the transcript was stored (`in_formula_of`),
    with its fixed context set apart (`memory.turn.align.fixed_context`)."""
    if request.fixed:
        return request
    request = in_formula_of(transcript, request)
    roles = [str(request.convo(i).get("role")) for i in range(len(request.hashes))]
    observations = {i for i in range(len(request.hashes)) if is_observation(request.convo(i))}
    tagged = {i for i in range(len(request.hashes)) if is_tagged_context(request.convo(i))}
    stored = [e.msg_hash for e in transcript]
    fixed = fixed_context(stored, request.hashes, roles, named, observations, tagged)
    if named and stored and fixed == list(range(leading_context(roles, tagged))):  # nothing beyond tagged context
        found = stored_head(stored, lambda i: transcript[i].role, request.hashes, roles, observations, tagged)
        if found is not None:
            return request.with_fixed(found.fixed, stored[: found.leaves])
    return request.with_fixed(fixed)


def in_formula_of(transcript: list[TranscriptEntry], request: Request) -> Request:
    """`request` hashed with `legacy_message_hash` when `transcript` was stored under that older
    formula (one of its entries is the older hash of a request message and not the current one):
    such a session keeps its formula, so it continues as stored instead of being detached and
    stored again (a compatibility path: nothing stored is rewritten)."""
    known = set(request.hashes)
    if len(request.hashes) >= len(transcript):  # a resent history: mostly the stored hashes
        unknown = {e.msg_hash for e in transcript} - known
        if not unknown:
            return request
        legacy = [legacy_message_hash(request.convo(i)) for i in range(len(request.hashes))]
        if unknown.isdisjoint(legacy):
            return request
    else:  # fewer messages than stored (a stateless client): their older hashes looked for, not 100k stored ones gathered
        legacy = [legacy_message_hash(request.convo(i)) for i in range(len(request.hashes))]
        older = set(legacy) - known
        if not older or all(e.msg_hash not in older for e in transcript):
            return request
    return Request(request.messages, request.convo_index, legacy, request.fixed, request.leaves)


def align_request(transcript: list[TranscriptEntry], request: Request, named: bool) -> Aligned:
    stored = [e.msg_hash for e in transcript]
    stored_roles = [e.role for e in transcript]
    request_roles = [str(request.convo(i).get("role")) for i in range(len(request.hashes))]
    # A stored head that is the client's fixed context leaves: the conversation is stored again from its start.
    leaves = bool(request.leaves) and tuple(stored[: len(request.leaves)]) == request.leaves
    alignment = Alignment("edit", 0, 0) if leaves else align(stored, stored_roles, request.hashes, named, request_roles)
    roles = stored_roles[: alignment.keep] + [str(request.convo(i).get("role")) for i in range(alignment.offset, len(request.hashes))]
    observations = {alignment.base + i for i in range(len(request.hashes)) if is_observation(request.convo(i))}
    return Aligned(alignment, roles, tail_start(roles, observations) if roles else 0)


def message_at(aligned: Aligned, pos: int, request: Request, transcript: list[TranscriptEntry],
               view: SessionView) -> tuple[dict[str, Any], int | None]:
    """The message at aligned position `pos` as it goes in the prompt, and its stored event id.
    The request's own copy wins (it is what the client sends again next turn, so the prompt's
    bytes stay stable); a position the request does not carry comes from memory."""
    base = aligned.alignment.base
    event_id = transcript[pos].event_id if pos < aligned.keep else None
    if pos >= base and pos - base < len(request.hashes):
        return request.convo(pos - base), event_id
    return unit_message(memory_unit(pos, aligned.keep, transcript, view)), event_id


@dataclass(frozen=True)
class TurnInputs:
    """The request laid against memory: the conversation before the live tail as prompt lines,
    the live tail, the app's system messages, the question, and the request's identity."""

    history: Sequence[Line]  # a `History`: lines built when the layout reads them (`memory.turn.history`)
    tail: list[dict[str, Any]]
    system: list[dict[str, Any]]
    query: str
    chains: list[str]
    hidden: frozenset[str]
    key: str
    sent_tokens: int
    carries_history: bool
    compaction: Compaction | None = None
    # The budget the prompt is laid out in (`effective_budget`), and the one the request asked for.
    budget: int = 0
    # The key of the request that opened this turn (its tail up to the last user message): a later
    # step of a tool loop reuses that request's evidence, so the turn's prefix stays cached.
    turn_key: str = ""
    rearranged: bool = False
    history_tools: bool = False
    asked_budget: Budget | None = None

    def anchor(self, n: int) -> str:
        return GENESIS_CHAIN if n == 0 else self.chains[n - 1]


def turn_inputs(aligned: Aligned, request: Request, transcript: list[TranscriptEntry], view: SessionView, model: str,
                budget: int | Budget, counter: TiktokenCounter, rewrite: Rewrite | None = None,
                memo: CompactMemo | None = None, compact_policy: CompactPolicy = CompactPolicy(), tools_tokens: int = 0,
                placing: tuple[FixedAnchors, str, FixedPolicy] | None = None) -> TurnInputs:
    """Everything the layout needs from the request and the stored transcript (pure but for
    `placing`: the session's anchors, its key and the policy that place its fixed context,
    `memory.turn.fixed`). A live tail that outgrows its room (`tail_room`) is compacted
    (`memory.turn.compact`); `rewrite` puts a compacted message back in the client's wire form.
    A `Budget` covering only what memory controls puts the fixed part and the turn's task message
    on top of it (`memory.turn.room.effective_budget`)."""
    asked_budget = budget if isinstance(budget, Budget) else Budget(budget)
    budget = asked_budget.tokens
    p, token_of = aligned.p, counter.message_tokens
    carried = [request.convo(i) for i in range(len(request.hashes))]
    # tools: whether a line is a tool call or result (`memory.prompt.need.plain_chat`)
    history, tools = turn_history(p, aligned.alignment.base, aligned.keep, carried, aligned.roles, transcript, view, counter)
    tail, system = _tail_and_system(aligned, request, transcript, view)
    chains = [e.chain_hash for e in transcript[:p]]
    anchor = chains[p - 1] if p else GENESIS_CHAIN
    hidden = frozenset(f"e{e.event_id}" for e in transcript[p:] if e.event_id is not None)
    sent = sum(token_of(m) for m in request.messages) + REPLY_PRIMING_TOKENS
    fixed = {id(request.messages[i]) for i in request.fixed}
    asked = [m for m in tail if id(m) not in fixed]  # the question, without the context re-sent with it
    key = request_key(system, anchor, tail, model, budget)
    opened = next((n for n in range(len(tail) - 1, -1, -1) if tail[n].get("role") == "user"), len(tail) - 1)
    turn_key = request_key(system, anchor, tail[: opened + 1], model, budget)
    rearranged = False
    if placing is not None:  # where the fixed context goes, and an updated one as a diff (`memory.turn.fixed`)
        placed = anchored(placing[1], system, tail, fixed, placing[0], placing[2])
        rearranged = placed.system != system or placed.tail != tail
        system, tail = placed.system, placed.tail
        fixed |= {id(m) for m in placed.added}
    system_tokens = sum(token_of(m) for m in system)
    # The client's fixed part: its system messages, the context it re-sends in the tail and the tool
    # definitions it declares; the messages get the budget less the tools'.
    fixed_tokens = system_tokens + sum(token_of(m) for m in tail if id(m) in fixed) + tools_tokens
    if asked_budget.covers != PROMPT:  # the message that opened the turn (the task) is always sent: fixed too
        fixed_tokens += next((token_of(m) for m in tail if m.get("role") == "user" and id(m) not in fixed), 0)
    budget = effective_budget(budget, fixed_tokens, asked_budget.covers) - tools_tokens
    room = tail_room(budget, system_tokens, bool(history), compact_policy)
    messages, compaction = compacted_tail(tail, room, int(budget * compact_policy.evidence_share), token_of, compact_policy,
                                          rewrite, memo)
    return TurnInputs(history, messages, system, query_text(asked or tail), chains, hidden, key, sent,
                      aligned.alignment.base == 0, compaction, budget, turn_key, rearranged, tools, asked_budget)


def build_plan(session_id: str, model: str, budget: int, request: Request, named: bool, scope: str, inputs: TurnInputs,
               frames: list[FrameRecord], reuse: TurnRecord | None, ranked: list[Scored], state: list[StateItem],
               view: SessionView, counter: TiktokenCounter, policy: LayoutPolicy) -> TurnPlan:
    """Lay the prompt out on the newest stored frame that still serves (the one an identical
    earlier request used, when this is a retry of it)."""
    p = inputs.history[-1].pos + 1 if inputs.history else 0

    def serves(f: FrameRecord) -> bool:
        return frame_serves(f, p, inputs.anchor, budget, counter.encoding_name)

    reuse = reuse if reuse is not None and reuse.tail_pos == p else None
    frame = _pick_frame(frames, reuse, serves)
    on_frame = reuse is not None and frame is not None and reuse.frame_id == frame.id
    reused_evidence = reuse.evidence if reuse is not None and on_frame else None
    layout = build_layout(
        LayoutInput(session_id, model, budget, inputs.system, inputs.history, inputs.tail, inputs.query, state, ranked,
                    anchor=inputs.anchor, hidden=inputs.hidden, frame=frame, reuse_evidence=reused_evidence, policy=policy,
                    retry=on_frame and reuse is not None and reuse.request_key == inputs.key, history_tools=inputs.history_tools),
        view, counter,
    )
    if inputs.asked_budget is not None and inputs.asked_budget.covers != PROMPT:  # which budget applied, when not `budget_tokens`'s plain one
        layout.manifest["budget"] = inputs.asked_budget.describe()
    if inputs.compaction is not None and inputs.compaction.compacted:
        layout.manifest["compaction"] = inputs.compaction.manifest()
        layout.manifest["included"] = _tail_items(layout.manifest.get("included") or [], inputs.compaction)
    return TurnPlan(session_id, model, budget, request, named, scope, result_of(layout, budget), layout, p, inputs.key,
                    inputs.sent_tokens, inputs.carries_history, inputs.compaction, inputs.rearranged)


def _tail_items(included: list[dict[str, Any]], compaction: Compaction) -> list[dict[str, Any]]:
    """The manifest's live-tail items as compacted: each says which tail message it stands for
    (`tail_index`) and how it went up (verbatim, stub, pointer, diff, arguments), the note for
    dropped steps and the excerpts (after the compacted tail) say so."""
    tail = [n for n, item in enumerate(included) if item.get("reason") == "live_tail"]
    out = list(included)
    for k, n in enumerate(tail):
        if k < len(compaction.origin):
            index, how = compaction.origin[k]
            out[n] = {**included[n], "tail_index": index, "compaction": how}
            if index is None:
                out[n]["reason"] = "compaction_note"
        else:
            out[n] = {**included[n], "reason": "excerpts", "tail_index": None}
    return out


def _pick_frame(frames: list[FrameRecord], reuse: TurnRecord | None, serves: Callable[[FrameRecord], bool]) -> FrameRecord | None:
    if reuse is not None:
        for frame in frames:
            if frame.id == reuse.frame_id and serves(frame):
                return frame
    return next((f for f in frames if serves(f)), None)


def _tail_and_system(aligned: Aligned, request: Request, transcript: list[TranscriptEntry],
                     view: SessionView) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The live tail, verbatim, and the app's system messages that go in front of everything.
    When the request carries the tail's first message, the tail is the request from there on
    (system messages inside it stay where they are); otherwise (a stateless client sending a tool
    result) the tail starts with memory's copies of the turn in progress. The client's fixed
    context goes where the client put it: right before the tail (aider's files message) it opens
    the tail, elsewhere it stays with the system messages."""
    p, base = aligned.p, aligned.alignment.base
    if p >= base and p - base < len(request.hashes):
        start = request.convo_index[p - base]
        while start > 0 and start - 1 in request.fixed:
            start -= 1
        system = [m for i, m in enumerate(request.messages[:start]) if request.is_context(i)]
        return list(request.messages[start:]), system
    stored = [message_at(aligned, pos, request, transcript, view)[0] for pos in range(p, base)]
    system = [m for i, m in enumerate(request.messages) if request.is_context(i)]
    return stored + [m for i, m in enumerate(request.messages) if not request.is_context(i)], system


def query_text(tail: list[dict[str, Any]]) -> str:
    users = [message_text(m.get("content")) for m in tail if m.get("role") == "user" and not is_observation(m)]
    return "\n".join(users) if users else message_text(tail[-1].get("content")) if tail else ""


def turn_record(plan: TurnPlan, frame_id: int | None, usage: Usage) -> TurnRecord:
    return TurnRecord(
        request_key=plan.request_key, frame_id=frame_id, tail_pos=plan.tail_pos, evidence=plan.layout.evidence, model=plan.model,
        mode=plan.mode, sent_tokens=plan.sent_tokens, forwarded_tokens=plan.result.tokens,
        prompt_tokens=usage.prompt_tokens, cached_tokens=usage.cached_tokens, completion_tokens=usage.completion_tokens,
        cache_write_tokens=usage.cache_write_tokens,
    )
