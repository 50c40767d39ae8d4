"""Appending events, written once for both stores: every id is allocated up front (one round trip),
every row built in order, and each table's rows sent as one batch. A 300-message history is a
handful of statements instead of a thousand. Ids come out in the order rows are built: an event's
artifact, the event, its chunks each followed by their probes, a diff and its chunks.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from memory.records import NewChunk, NewEvent

__all__ = ["Batch", "plan_events", "build", "CHUNK_ROW", "INSERT_ARTIFACT", "INSERT_EVENT"]

# Columns of the generic chunk row a backend's `_add_chunks` receives.
CHUNK_ROW = "id, session_id, event_id, artifact_id, ord, text, start_line, end_line, content_hash, tokens, parent_id"
INSERT_ARTIFACT = ("INSERT INTO artifacts(id, session_id, sha256, kind, source, version, content, pinned, previous_id, first_event_id, "
                   "last_event_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")
INSERT_EVENT = ("INSERT INTO events(id, session_id, type, role, content, source, pinned, timestamp, payload, artifact_id, parent_event_id, "
                "created_at, tokens) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")


@dataclass
class Batch:
    """Rows of one `add_events` call, built in id order before anything is sent."""

    session_id: str
    event_ids: list[int]
    artifacts: list[list[Any]] = field(default_factory=list)
    events: list[list[Any]] = field(default_factory=list)
    chunks: list[tuple[Any, ...]] = field(default_factory=list)
    touched: list[tuple[int, int, int, int | None]] = field(default_factory=list)  # (event, event, pinned, artifact) of stored artifacts
    now: float = field(default_factory=time.time)

    def add_chunks(self, chunks: Sequence[NewChunk], ids: Iterator[int], event_id: int | None, artifact_id: int | None) -> None:
        for i, c in enumerate(chunks):
            chunk_id = next(ids)
            self.chunks.append((chunk_id, self.session_id, event_id, artifact_id, i, c.text, c.start_line, c.end_line, c.content_hash,
                                c.tokens, None))
            self.chunks += [(next(ids), self.session_id, event_id, artifact_id, i, text, c.start_line, c.end_line, digest, 0, chunk_id)
                            for text, digest in c.probes]


def _chunk_count(chunks: Sequence[NewChunk]) -> int:
    return sum(1 + len(c.probes) for c in chunks)


def plan_events(events: Sequence[NewEvent], known: dict[str, int | None]) -> tuple[list[tuple[bool, bool]], int, int]:
    """Per event (creates its artifact, creates a diff artifact), and the artifact and chunk ids
    needed. `known` (sha -> id of the session's stored artifacts) gains the shas to be created (None)."""
    plan: list[tuple[bool, bool]] = []
    new_artifacts = n_chunks = 0
    for ev in events:
        creates = ev.artifact_sha is not None and ev.artifact_sha not in known
        diff = creates and ev.diff is not None and ev.diff[0] not in known
        for sha in ([ev.artifact_sha] if creates else []) + ([ev.diff[0]] if diff and ev.diff else []):
            known[str(sha)] = None
            new_artifacts += 1
        if ev.artifact_sha is None or creates:
            n_chunks += _chunk_count(ev.chunks) + (_chunk_count(ev.diff[2]) if diff and ev.diff else 0)
        plan.append((creates, diff))
    return plan, new_artifacts, n_chunks


def build(batch: Batch, events: Sequence[NewEvent], known: dict[str, int | None], plan: list[tuple[bool, bool]],
          artifact_ids: Iterator[int], chunk_ids: Iterator[int]) -> None:
    """Every row of `events`, in id order, into `batch`."""
    created: dict[str, list[Any]] = {}  # sha -> artifact row built in this batch
    for ev, event_id, (creates, diff) in zip(events, batch.event_ids, plan, strict=True):
        artifact_id: int | None = None
        if ev.artifact_sha is not None:
            if creates:
                artifact_id = next(artifact_ids)
                created[ev.artifact_sha] = [artifact_id, batch.session_id, ev.artifact_sha, ev.artifact_kind, ev.source, ev.version,
                                            ev.content, int(ev.pinned), ev.previous_id, event_id, event_id]
                batch.artifacts.append(created[ev.artifact_sha])
            elif ev.artifact_sha in created:  # a second event of this batch with the same content
                row = created[ev.artifact_sha]
                artifact_id, row[10], row[7] = int(row[0]), event_id, max(row[7], int(ev.pinned))
            else:
                artifact_id = known[ev.artifact_sha]
                batch.touched.append((event_id, event_id, int(ev.pinned), artifact_id))
        parent = batch.event_ids[ev.parent_index] if ev.parent_index is not None else None
        batch.events.append([event_id, batch.session_id, ev.type, ev.role, "" if artifact_id is not None else ev.content, ev.source,
                             int(ev.pinned), ev.timestamp, ev.payload, artifact_id, parent, batch.now, ev.tokens])
        if artifact_id is None:
            batch.add_chunks(ev.chunks, chunk_ids, event_id, None)
        elif creates:
            batch.add_chunks(ev.chunks, chunk_ids, None, artifact_id)
            if diff and ev.diff is not None:
                sha, text, chunks = ev.diff
                diff_id = next(artifact_ids)
                batch.artifacts.append([diff_id, batch.session_id, sha, "diff", ev.source, ev.version, text, 0, ev.previous_id, event_id,
                                        event_id])
                batch.add_chunks(chunks, chunk_ids, None, diff_id)
