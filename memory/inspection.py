"""Looking into what memory holds and what it did, as JSON-ready data: a session's event log and
artifact versions page by page, the cost of each forwarded prompt, the last prompt laid out item by
item with the text each item stood for, and usage summed across sessions.

The last prompt is rebuilt from what is stored: the compile manifest lists every item in prompt
order (the app's system messages, the state block, evidence, the verbatim window, the live tail)
with why it was included, its score and its tokens; each item's text is read back from the state
item, event or chunk it names. The app's system messages are never stored, so they come back as a
token count only. Read-only throughout.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

from memory.errors import InvalidArgumentError
from memory.records import LoggedEvent, SessionSummary
from memory.turn.usage import totals_dict

if TYPE_CHECKING:
    from memory.runtime import Runtime
    from memory.session import Session

__all__ = ["event_page", "events_by_id", "artifact_page", "artifact", "turns", "last_prompt", "find_sessions", "usage_report",
           "MAX_PAGE"]

MAX_PAGE = 1000


def _limit(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_PAGE:
        raise InvalidArgumentError(f"limit must be an integer from 1 to {MAX_PAGE}")
    return value


def _event_dict(event: LoggedEvent) -> dict[str, Any]:
    out = dataclasses.asdict(event)
    # The payload repeats the content; what else it holds (tool calls, names) is worth showing.
    out["payload"] = {k: v for k, v in event.payload.items() if k != "content"}
    return out


async def event_page(session: Session, before: int | None = None, limit: int = 50) -> list[dict[str, Any]]:
    """The session's events before the id `before` (None: from the newest), newest first, detached
    ones (edited away or regenerated) included and marked."""
    await session.runtime.open()
    return [_event_dict(e) for e in await session.runtime.store.event_page(session.id, before, _limit(limit))]


async def events_by_id(session: Session, ids: list[int]) -> list[dict[str, Any]]:
    """The session's events with these ids (the sources of a state item, say), in id order."""
    if len(ids) > MAX_PAGE:
        raise InvalidArgumentError(f"at most {MAX_PAGE} event ids at once")
    await session.runtime.open()
    return [_event_dict(e) for e in await session.runtime.store.events_by_id(session.id, ids)]


async def artifact_page(session: Session, after: int = 0, limit: int = 200) -> list[dict[str, Any]]:
    """The session's artifact versions (snapshots, diffs, snippets, code blocks from messages)
    with ids above `after`, oldest first, without their content."""
    await session.runtime.open()
    return [dataclasses.asdict(a) for a in await session.runtime.store.artifact_page(session.id, after, _limit(limit))]


async def artifact(session: Session, artifact_id: int) -> dict[str, Any] | None:
    """One artifact version with its content, or None."""
    await session.runtime.open()
    store = session.runtime.store
    content = await store.artifact_content(session.id, artifact_id)
    if content is None:
        return None
    info = next(iter(await store.artifact_page(session.id, artifact_id - 1, 1)))
    return {**dataclasses.asdict(info), "content": content}


async def turns(session: Session, limit: int = MAX_PAGE) -> list[dict[str, Any]]:
    """The cost of each forwarded prompt, oldest first (the most recent `limit`): tokens the client
    sent, tokens forwarded, and what the provider reported (prompt, cached, completion; None where
    it reported nothing)."""
    await session.runtime.open()
    out = []
    for n, t in enumerate(await session.runtime.store.turns(session.id, _limit(limit)), start=1):
        out.append({"n": n, "created_at": t.created_at, "model": t.model, "mode": t.mode, "sent_tokens": t.sent_tokens,
                    "forwarded_tokens": t.forwarded_tokens, "prompt_tokens": t.prompt_tokens, "cached_tokens": t.cached_tokens,
                    "completion_tokens": t.completion_tokens, "cache_write_tokens": t.cache_write_tokens})
    return out


def _ref(item: dict[str, Any]) -> tuple[str, str]:
    kind, _, ref = str(item.get("id") or "").partition(":")
    return kind, ref


async def last_prompt(session: Session) -> dict[str, Any] | None:
    """The last compile manifest with each included and dropped item given the `text` it stood
    for (None where nothing stored holds it: the app's system messages, a retry's reused
    evidence), or None when the session has no manifest yet."""
    manifest = await session.last_manifest()
    if manifest is None:
        return None
    store = session.runtime.store
    included: list[dict[str, Any]] = list(manifest.get("included") or [])
    dropped: list[dict[str, Any]] = list(manifest.get("dropped") or [])
    event_ids = {int(ref) for item in included if (k := _ref(item))[0] == "event" and (ref := k[1]).isdigit()}
    chunk_ids = {int(ref) for item in included + dropped if (k := _ref(item))[0] == "chunk" and (ref := k[1]).isdigit()}
    tail = [i for i, item in enumerate(included) if item.get("reason") == "live_tail"]
    tail_pos = manifest.get("tail_pos")
    transcript = await store.transcript(session.id) if tail and isinstance(tail_pos, int) else []
    start = tail_pos if isinstance(tail_pos, int) else 0  # no transcript was read otherwise
    # A compacted tail's items say which tail message they stand for (`tail_index`).
    offsets = {i: included[i].get("tail_index", n) for n, i in enumerate(tail)}
    tail_events = {i: transcript[start + k].event_id for i, k in offsets.items() if isinstance(k, int) and 0 <= start + k < len(transcript)}
    event_ids |= {e for e in tail_events.values() if e is not None}
    events = {e.id: e for e in await store.events_by_id(session.id, sorted(event_ids))}
    chunks = {c.id: c for c in await store.chunks_by_id(session.id, sorted(chunk_ids))}
    state = {s.label: s.text for s in await store.state_items(session.id)}

    def text_of(index: int | None, item: dict[str, Any]) -> str | None:
        kind, ref = _ref(item)
        if kind == "state":
            return state.get(ref)
        if kind == "event" and ref.isdigit() and int(ref) in events:
            return events[int(ref)].content
        if kind == "chunk" and ref.isdigit() and int(ref) in chunks:
            return chunks[int(ref)].text
        tail_event = tail_events.get(index) if index is not None else None
        return events[tail_event].content if tail_event is not None and tail_event in events else None

    return {
        **manifest,
        "included": [{**item, "text": text_of(i, item)} for i, item in enumerate(included)],
        "dropped": [{**item, "text": text_of(None, item)} for item in dropped],
    }


async def find_sessions(runtime: Runtime, prefix: str = "", contains: str = "", after: str | None = None,
                        limit: int = 50) -> list[SessionSummary]:
    """Sessions whose id starts with `prefix` and whose rest contains `contains` (case-insensitive), in id
    order after the id `after`."""
    return await runtime.page_sessions(prefix, after, _limit(limit), contains)


async def usage_report(runtime: Runtime, prefix: str = "", limit: int = 100) -> dict[str, Any]:
    """Usage over the sessions whose id starts with `prefix`: the number of sessions, totals over
    every forwarded prompt, and per-session totals (the most tokens forwarded first, at most
    `limit`)."""
    await runtime.open()
    store = runtime.store
    per_session = await store.usage_by_session(prefix, _limit(limit))
    return {
        "sessions": await store.count_sessions(prefix),
        "totals": totals_dict(await store.usage_overall(prefix)),
        "by_session": [{"session_id": u.session_id, "updated_at": u.updated_at, **totals_dict(u.totals)} for u in per_session],
    }
