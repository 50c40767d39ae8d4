"""Message hashes: what makes two messages the same message in a transcript, and the compatibility
path for transcripts stored under the older formula."""

from __future__ import annotations

import hashlib
import json

from memory.ingest.transcript import chain_hashes, legacy_message_hash, message_hash
from memory.records import TranscriptEntry
from memory.turn.turns import Request, align_request, classify_fixed


def _call(arguments: str) -> dict:
    return {"role": "assistant", "content": None,
            "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": arguments}}]}


def test_re_serialised_tool_call_arguments_are_the_same_call() -> None:
    compact, spaced = _call('{"city":"Paris","unit":"C"}'), _call('{"unit": "C", "city": "Paris"}')
    assert message_hash(compact) == message_hash(spaced)
    assert legacy_message_hash(compact) != legacy_message_hash(spaced)
    # Different arguments are a different call; arguments that are not JSON are kept as they are.
    assert message_hash(_call('{"city":"Lyon"}')) != message_hash(compact)
    assert message_hash(_call("not json {")) != message_hash(_call("not  json {"))


def test_whitespace_only_changes_are_the_same_message() -> None:
    sent = {"role": "user", "content": "Remember: the codename is heliotrope."}
    restored = {"role": "user", "content": "Remember: the codename  is heliotrope.  \n"}
    assert message_hash(sent) == message_hash(restored)
    parts = {"role": "user", "content": [{"type": "text", "text": "line one\n\nline two"}]}
    assert message_hash(parts) == message_hash({"role": "user", "content": [{"type": "text", "text": "line one line two "}]})
    assert message_hash(sent) != message_hash({"role": "user", "content": "Remember: the codename is heliotrope!"})


def test_a_message_with_nothing_to_normalise_hashes_as_it_always_did() -> None:
    for message in ({"role": "user", "content": "hi"}, _call('{"city":"Paris"}')):
        assert message_hash(message) == legacy_message_hash(message)
    canonical = json.dumps({"content": "hi", "role": "user"}, separators=(",", ":"))
    assert message_hash({"role": "user", "content": "hi"}) == hashlib.sha256(canonical.encode()).hexdigest()


def test_a_transcript_stored_under_the_older_hashes_continues_in_that_formula() -> None:
    history = [{"role": "user", "content": "What is the weather\nin Paris?"}, _call('{"city": "Paris"}'),
               {"role": "tool", "tool_call_id": "call_1", "content": "18C"}, {"role": "assistant", "content": "It is 18C."}]
    legacy = [legacy_message_hash(m) for m in history]
    chains = chain_hashes(legacy)
    transcript = [TranscriptEntry(i, legacy[i], chains[i], i + 1, str(m["role"])) for i, m in enumerate(history)]
    question = {"role": "user", "content": "And tomorrow?\n"}
    request = Request.of(history + [question])
    assert request.hashes[:4] != legacy  # the formula changed for these messages ...
    read = classify_fixed(transcript, request, named=True)
    assert read.hashes == legacy + [legacy_message_hash(question)]  # ... the session keeps the one it was stored under
    aligned = align_request(transcript, read, named=True)
    assert (aligned.alignment.kind, aligned.keep) == ("extend", 4)  # and continues, nothing detached
    # A session stored under the current formula is read in it.
    current = [TranscriptEntry(i, h, c, i + 1, str(m["role"])) for i, (h, c, m) in
               enumerate(zip(request.hashes[:4], chain_hashes(request.hashes[:4]), history, strict=True))]
    assert classify_fixed(current, request, named=True).hashes == request.hashes


def test_a_request_shorter_than_its_transcript_is_read_in_the_formula_it_was_stored_under() -> None:
    """A sliding-window or stateless client sends fewer messages than are stored: a resent message
    stored under the older hash still moves the request to that formula; one that was never
    stored, or stored under the current hash, does not."""
    history = [{"role": "user", "content": f"Item {i}\nof the list."} if i % 2 == 0 else {"role": "assistant", "content": f"Noted {i}."}
               for i in range(12)]
    question = {"role": "user", "content": "And the next one?\n"}
    for formula in (legacy_message_hash, message_hash):
        hashes = [formula(m) for m in history]
        transcript = [TranscriptEntry(i, h, c, i + 1, str(m["role"])) for i, (h, c, m) in
                      enumerate(zip(hashes, chain_hashes(hashes), history, strict=True))]
        for sent in (history[-4:] + [question], [question]):
            request = Request.of(sent)
            assert len(request.hashes) < len(transcript)
            older = formula is legacy_message_hash and len(sent) > 1  # resends a message stored under the older hash
            expected = [legacy_message_hash(m) for m in sent] if older else request.hashes
            assert classify_fixed(transcript, request, named=True).hashes == expected
