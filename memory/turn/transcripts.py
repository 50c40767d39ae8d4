"""The stored transcripts of the sessions a process serves, kept between their turns.

Every turn aligns its request with the session's stored transcript, once when it is planned
(`TurnProtocol.prepare_turn`) and again when it is committed; an agent's session holds a transcript
position per message of its loop, so each step read the whole of it from the store twice.

A copy kept here is good while the session's high-water mark — (max event id, generation), from
`Store.high_water`, read from the store at every use — has not moved. Every change to a transcript
adds events (`Session._write`, whose ids only grow) or detaches messages (which moves the
generation on); erasing or renaming a session starts a new generation. So a write by another
process sharing the store (PostgreSQL, several workers) is seen at the next read as surely as one
of this process. The mark is read before the transcript: a write landing between the two leaves
the copy under an older mark, which the next read finds stale.

The session's own writer keeps the copy current (`wrote`): it knows the transcript it wrote and
reads the new mark inside its transaction, so the next turn does not read the transcript again.
The lists handed out are shared: callers read them, never modify them.
"""

from __future__ import annotations

from collections import OrderedDict

from memory.records import TranscriptEntry
from memory.store.protocol import Store, StoreTx

__all__ = ["TranscriptCache", "Mark", "MAX_ENTRIES"]

# (max event id, generation) of a session
Mark = tuple[int, int]


# Transcript positions kept in all (~410 bytes each: two hex digests and the record), so the copies
# stay within ~40 MiB however many sessions a proxy serves; the least recently used
# session leaves first, and a transcript longer than this is read from the store each time.
MAX_ENTRIES = 100_000


class TranscriptCache:
    """Transcripts by session id, each under the high-water mark it was read at (bounded by
    session count and by `max_entries` positions in all; least recently used first out)."""

    def __init__(self, max_sessions: int = 256, max_entries: int = MAX_ENTRIES) -> None:
        self._max = max(1, max_sessions)
        self._max_entries = max_entries
        self._size = 0
        self._entries: OrderedDict[str, tuple[Mark, list[TranscriptEntry]]] = OrderedDict()

    @staticmethod
    async def mark(reads: Store | StoreTx, session_id: str) -> Mark:
        max_event, _, generation = await reads.high_water(session_id)
        return max_event, generation

    async def read(self, reads: Store | StoreTx, session_id: str) -> list[TranscriptEntry]:
        """The session's stored transcript (read-only), from the store unless the copy kept here
        is still current. `reads` is the store, or a transaction of it."""
        mark = await self.mark(reads, session_id)
        found = self._entries.get(session_id)
        if found is not None and found[0] == mark:
            self._entries.move_to_end(session_id)
            return found[1]
        transcript = await reads.transcript(session_id)
        self._keep(session_id, mark, transcript)
        return transcript

    def wrote(self, session_id: str, base: list[TranscriptEntry], transcript: list[TranscriptEntry], mark: Mark) -> None:
        """A committed write took the session's transcript from `base` to `transcript`; `mark` was
        read after it, in its transaction. Kept only when `base` is the copy held here (the writer
        read it from this cache under the session's lock); otherwise the copy is dropped."""
        found = self._entries.get(session_id)
        if found is not None and found[1] is base:
            self._keep(session_id, mark, transcript)
        else:
            self.forget(session_id)

    def forget(self, session_id: str) -> None:
        found = self._entries.pop(session_id, None)
        if found is not None:
            self._size -= len(found[1])

    @property
    def size(self) -> int:
        """Transcript positions held, over all sessions."""
        return self._size

    def _keep(self, session_id: str, mark: Mark, transcript: list[TranscriptEntry]) -> None:
        self.forget(session_id)
        if len(transcript) > self._max_entries:
            return
        self._entries[session_id] = (mark, transcript)
        self._size += len(transcript)
        while len(self._entries) > self._max or self._size > self._max_entries:
            _, (_, dropped) = self._entries.popitem(last=False)
            self._size -= len(dropped)
