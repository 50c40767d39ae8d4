"""Plain typed records that cross the storage boundary. The store returns these; nothing above
the store sees a database row."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, NamedTuple

__all__ = [
    "EventRow", "ArtifactRow", "ChunkRow", "StateItem", "NewChunk", "NewEvent", "SessionSummary", "SessionDelta",
    "TranscriptEntry", "FrameRecord", "TurnRecord", "UsageTotals", "LoggedEvent", "ArtifactInfo", "SessionUsage",
]


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
    tokens: int | None = None  # a message's count under `memory.recall.tokens.STORED_ENCODING`


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
    tokens: int | None = None  # a message's stored count (`STORED_ENCODING`); None: not counted yet


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


class ChunkRow(NamedTuple):
    """A stored chunk (a probe when `parent_id` is set: a short window that stands in for its
    chunk). A named tuple, not a frozen dataclass: a 100,000-event view loads ~290,000 of them, and
    building frozen dataclasses (one `object.__setattr__` per field) was most of that load's CPU."""

    id: int
    event_id: int | None
    artifact_id: int | None
    ord: int
    text: str
    start_line: int
    end_line: int
    content_hash: str
    parent_id: int | None = None
    tokens: int = 0  # o200k_base count of `text`


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


@dataclass(frozen=True)
class TranscriptEntry:
    """One position of a session's live transcript: the message's hash, the chain hash of the
    prefix ending here, the event that stores it, and its role."""

    pos: int
    msg_hash: str
    chain_hash: str
    event_id: int | None
    role: str


@dataclass(frozen=True)
class FrameRecord:
    """The stable top of a session's forwarded prompts: `base` (memory's messages after the app's
    system messages) and where the verbatim window starts. Valid for a request whose transcript
    prefix up to `window_start` has the chain hash `anchor`."""

    id: int
    window_start: int
    anchor: str
    encoding: str
    budget: int
    base: tuple[dict[str, Any], ...]
    items: tuple[dict[str, Any], ...]


@dataclass(frozen=True)
class TurnRecord:
    """One forwarded prompt: what a retry of the same request reuses, and what it cost."""

    request_key: str
    frame_id: int | None
    tail_pos: int
    evidence: dict[str, Any] | None
    model: str
    mode: str
    sent_tokens: int
    forwarded_tokens: int
    prompt_tokens: int | None = None
    cached_tokens: int | None = None
    completion_tokens: int | None = None
    created_at: float = 0.0
    # Prompt tokens the provider wrote to its cache (Anthropic's cache_creation_input_tokens).
    cache_write_tokens: int | None = None


@dataclass(frozen=True)
class UsageTotals:
    """Per-session totals over forwarded prompts. `sent` is what the client's requests held,
    `forwarded` what the proxy sent (both counted by the proxy); `prompt`, `cached` and
    `completion` are what the provider reported (0 where it reported nothing)."""

    turns: int = 0
    sent_tokens: int = 0
    forwarded_tokens: int = 0
    prompt_tokens: int = 0
    cached_tokens: int = 0
    completion_tokens: int = 0

    def as_dict(self) -> dict[str, int]:
        return {
            "turns": self.turns, "sent_tokens": self.sent_tokens, "forwarded_tokens": self.forwarded_tokens,
            "prompt_tokens": self.prompt_tokens, "cached_tokens": self.cached_tokens, "completion_tokens": self.completion_tokens,
        }


@dataclass(frozen=True)
class LoggedEvent(EventRow):
    """One event of a session's log as an inspector shows it: detached events (edited away or
    regenerated) included and marked."""

    detached: bool = False
    created_at: float = 0.0


@dataclass(frozen=True)
class ArtifactInfo(ArtifactRow):
    """One stored version of an artifact, without its content: `previous_id` is the version
    before it of the same source, `chars` the content's length."""

    chars: int = 0


@dataclass(frozen=True)
class SessionUsage:
    """A session's usage totals, for cost reports across sessions."""

    session_id: str
    updated_at: float
    totals: UsageTotals
