"""Plain typed records that cross the storage boundary. The store returns these; nothing above
the store sees a database row."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["EventRow", "ArtifactRow", "ChunkRow", "StateItem", "NewChunk", "NewEvent", "SessionSummary", "SessionDelta"]


@dataclass(frozen=True)
class NewChunk:
    text: str
    start_line: int
    end_line: int
    content_hash: str
    tokens: int = 0  # o200k_base count of `text`
    probes: tuple[tuple[str, str], ...] = ()  # (text, content hash) of short prose windows inside


@dataclass
class NewEvent:
    """An event prepared by the runtime for storage. When `artifact_sha` is set the event carries
    an artifact: an existing artifact with that hash is reused, else a new one is created with
    `chunks`; `diff` (text, chunks) is stored as a derived diff artifact against `previous_id`."""

    type: str
    role: str | None
    content: str
    source: str | None
    pinned: bool
    timestamp: str | None
    payload: str
    chunks: list[NewChunk] = field(default_factory=list)
    artifact_kind: str | None = None
    artifact_sha: str | None = None
    previous_id: int | None = None
    version: int = 1
    diff: tuple[str, str, list[NewChunk]] | None = None  # (sha, text, chunks)
    message_hash: str | None = None  # transcript hash of the message as sent
    parent_index: int | None = None  # index of the message event this artifact was extracted from


@dataclass(frozen=True)
class EventRow:
    id: int
    type: str
    role: str | None
    content: str
    source: str | None
    pinned: bool
    timestamp: str | None
    payload: dict[str, Any]
    artifact_id: int | None
    parent_event_id: int | None


@dataclass(frozen=True)
class ArtifactRow:
    id: int
    kind: str
    source: str | None
    version: int
    pinned: bool
    previous_id: int | None
    first_event_id: int | None
    last_event_id: int | None
    sha256: str


@dataclass(frozen=True)
class ChunkRow:
    id: int
    event_id: int | None
    artifact_id: int | None
    ord: int
    text: str
    start_line: int
    end_line: int
    content_hash: str
    parent_id: int | None = None
    tokens: int = 0  # o200k_base count of `text`  # set on probes: short windows that stand in for their chunk


@dataclass(frozen=True)
class StateItem:
    """One decision, constraint, open question or glossary entry, with the events it came from."""

    id: int
    kind: str
    label: str
    subject: str | None
    text: str
    status: str
    superseded_by: int | None
    event_id: int | None
    source_events: tuple[int, ...]

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.label,
            "kind": self.kind,
            "subject": self.subject,
            "text": self.text,
            "status": self.status,
            "event_id": self.event_id,
            "source_events": list(self.source_events),
        }


@dataclass(frozen=True)
class SessionSummary:
    id: str
    created_at: float
    updated_at: float
    events: int
    messages: int
    artifacts: int
    chunks: int


@dataclass
class SessionDelta:
    """Everything stored for a session after the given high-water marks."""

    events: list[EventRow]
    artifacts: list[ArtifactRow]
    chunks: list[ChunkRow]
