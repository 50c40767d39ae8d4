"""Turning validated events into storage rows: chunks, content addresses, version diffs, and the
state changes their text implies. Runs inside the write transaction so a version lookup and the
write that depends on it cannot interleave with another writer."""

from __future__ import annotations

import difflib
import hashlib
from collections.abc import Callable

from memory.ingest.chunking import chunk_text
from memory.ingest.events import Event, parse_event
from memory.records import NewChunk, NewEvent
from memory.store.protocol import StoreTx
from memory.prompt.state import KIND_PREFIX, extract_lines, plan_state_ops
from memory.ingest.transcript import event_to_message, extract_artifacts
from memory.recall.tokens import stored_counter

__all__ = ["prepare_events", "precompute", "apply_state", "rebuild_state", "sha256_text", "Precomputed"]

Counter = Callable[[str], int]


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _chunks(text: str, count: Counter, kind: str) -> list[NewChunk]:
    return [
        NewChunk(c.text, c.start_line, c.end_line, sha256_text(c.text), count(c.text), tuple((p, sha256_text(p)) for p in c.probes))
        for c in chunk_text(text, count, kind)
    ]


# What `precompute` works out off the event loop, per event: the message's chunks, for each code
# block or diff inside it the derived event and its chunks, and the message's token count (stored,
# so a view rebuilt after a restart need not count the history again); for an artifact event, its
# chunks (and no count).
Precomputed = list[tuple[list[NewChunk], list[tuple[Event, list[NewChunk]]], int | None]]


def precompute(events: list[Event], count: Counter) -> Precomputed:
    """The CPU-bound part of preparing events (chunking, token counts, extracting code blocks), pure,
    so the caller can run it in a worker thread and keep the event loop free."""
    out: Precomputed = []
    counter = stored_counter()
    for ev in events:
        if not ev.is_message:
            out.append((_chunks(ev.content, count, "diff" if ev.type == "repo_diff" else "text"), [], None))
            continue
        derived = [parse_event({"type": kind, "payload": {"content": body, "source": source}})
                   for kind, source, body in extract_artifacts(ev.content)]
        out.append((_chunks(ev.content, count, "message"),
                    [(d, _chunks(d.content, count, "diff" if d.type == "repo_diff" else "text")) for d in derived],
                    counter.message_tokens(event_to_message(ev.role or "user", ev.content, ev.extra))))
    return out


async def _artifact_event(tx: StoreTx, session_id: str, ev: Event, count: Counter, parent_index: int | None,
                          pending: dict[str, tuple[int, str]], chunks: list[NewChunk]) -> NewEvent:
    sha = sha256_text(ev.content)
    out = NewEvent(
        type=ev.type, role=None, content=ev.content, source=ev.source, pinned=ev.pinned, timestamp=ev.timestamp,
        payload=ev.payload_json(), artifact_kind=ev.type, artifact_sha=sha, parent_index=parent_index,
    )
    if await tx.artifact_exists(session_id, sha) or sha in pending:
        return out
    out.chunks = chunks
    if ev.type == "file" and ev.source:
        # A file event is a full snapshot: a new version of a known path gets a diff against the last one.
        latest = await tx.latest_artifact(session_id, ev.source)
        prev_version, prev_content = (latest[1], latest[2]) if latest else (0, None)
        if ev.source in pending:
            prev_version, prev_content = pending[ev.source]
        if prev_content is not None:
            out.version = prev_version + 1
            out.previous_id = latest[0] if latest and ev.source not in pending else None
            diff = "".join(difflib.unified_diff(
                prev_content.splitlines(keepends=True), ev.content.splitlines(keepends=True),
                fromfile=f"a/{ev.source}", tofile=f"b/{ev.source}", n=2,
            ))
            if diff:
                out.diff = (sha256_text("diff:" + diff), diff, _chunks(diff, count, "diff"))
        pending[ev.source] = (out.version, ev.content)
    return out


async def prepare_events(tx: StoreTx, session_id: str, events: list[Event], count: Counter,
                         pre: Precomputed) -> tuple[list[NewEvent], list[int]]:
    """Rows for `events` (with `pre`, their `precompute`), plus the indexes (into the returned
    list) of the message events, whose text feeds state extraction and the transcript. Code blocks
    and diffs in messages become derived artifacts pointing at their message."""
    rows: list[NewEvent] = []
    message_idx: list[int] = []
    pending: dict[str, tuple[int, str]] = {}
    for ev, (chunks, derived, tokens) in zip(events, pre, strict=True):
        if not ev.is_message:
            rows.append(await _artifact_event(tx, session_id, ev, count, None, pending, chunks))
            continue
        rows.append(NewEvent(
            type=ev.type, role=ev.role, content=ev.content, source=ev.source, pinned=ev.pinned, timestamp=ev.timestamp,
            payload=ev.payload_json(), chunks=chunks, message_hash=ev.message_hash, tokens=tokens,
        ))
        index = len(rows) - 1
        message_idx.append(index)
        for d, d_chunks in derived:
            rows.append(await _artifact_event(tx, session_id, d, count, index, pending, d_chunks))
    return rows, message_idx


PAIR_CHARS = 400


async def add_pair_probes(tx: StoreTx, session_id: str, event_ids: list[int], texts: list[str]) -> None:
    """Embed each message together with the one before it, as a probe of both.

    In a conversation the fact often lives in one turn and its subject in the neighbour ("Did you
    go to the support group?" / "Yes, last Tuesday!"). One extra embedding per message, of the pair,
    stands in for both turns, so either can be found by a question that needs the other's words."""
    if not event_ids:
        return
    previous = await tx.last_message_before(session_id, event_ids[0])
    chunk_ids = await tx.first_chunk_ids(event_ids + ([previous[0]] if previous else []))
    probes: list[tuple[int, str, str]] = []
    for event_id, text in zip(event_ids, texts, strict=True):
        if previous is not None and text.strip() and previous[1].strip():
            pair = f"{previous[1][-PAIR_CHARS:]}\n{text[:PAIR_CHARS]}"
            digest = sha256_text(pair)
            probes += [(chunk_ids[e], pair, digest) for e in (previous[0], event_id) if e in chunk_ids]
        previous = (event_id, text)
    await tx.add_probes(session_id, probes)


async def apply_state(tx: StoreTx, session_id: str, text: str, event_id: int) -> None:
    """Extract state lines from one message and apply them (add, merge, supersede, close)."""
    ops = extract_lines(text)
    if not ops:
        return
    items = await tx.state_items(session_id)
    counts = {k: sum(1 for i in items if i.kind == k) for k in KIND_PREFIX}
    for one in ops:
        change = plan_state_ops(items, [one])[0]
        op = change.op
        if change.merge_into is not None:
            await tx.add_state_source(change.merge_into, event_id)
            continue
        new_id: int | None = None
        if op.kind != "close":
            counts[op.kind] += 1
            label = f"{KIND_PREFIX[op.kind]}{counts[op.kind]}"
            new_id = await tx.add_state_item(session_id, op.kind, label, op.subject, op.text, op.text.lower(), event_id)
        for item_id, status in change.retire:
            await tx.set_state_status(item_id, status, new_id)
        items = await tx.state_items(session_id)


async def rebuild_state(tx: StoreTx, session_id: str) -> None:
    """Recompute the session's state from the messages on its transcript, in order: after messages
    left the transcript (an edit, a regenerated reply), what they decided must not stand."""
    await tx.clear_state(session_id)
    for event_id, text in await tx.live_messages(session_id):
        await apply_state(tx, session_id, text, event_id)
