"""How a session's prompts trade the provider's prompt cache against fresh evidence per question.

A layout (see `memory.prompt.layout`) keeps a stable top that the provider caches and adds evidence for
each question after it. When the question reaches far beyond what the prompt shows, rebuilding the
top around it (a *rebase*, the library's fresh compile) brings the most evidence, at the price of one
uncached prompt. `LayoutPolicy` holds every threshold of that trade; its presets were tuned on LoCoMo
dev conversations only (benchmarks section F; 6-10 are reported as held out):

- ``cache`` (the default): each question's own evidence after the cached part, the matches out
  of view down to 0.15 of the best one's score within 0.6 of the room; the frame's base and window
  fill at most 0.4 of the room at a rebase; a rebase when the budget forces it or the room the
  stable part leaves is below 0.2 of the room. Why: of the 54 questions (of 231, LoCoMo 1-2, budget
  4,000, asked in sequence) the previous values (floor 0.4, share 0.35, base 0.6, 0.15) missed, 30
  were found by a fresh compile of the same session at that moment; in 25 of those the block had
  room to spare and the floor (0.4 of a best match 2-3× stronger than the rest) had cut it short.
  Measured there (`benchmarks.cache_cost --conversations 1-2 --sequence-only --misses`), recall in
  sequence / cost at r = 0.1 / 0.25 / 0.5:
  previous 0.766 / 0.70× / 0.41× / 0.31×; floor 0.25, share 0.55, base 0.45: 0.805 / 0.86× / 0.48×
  / 0.34×; floor 0.4 with the first 0.25 of the room unfloored (`evidence_min_block`), share 0.45:
  0.801 / 0.85× / 0.48× / 0.34×; **these values: 0.831 / 1.03× / 0.54× / 0.37×**; no floor, share
  0.7, base 0.3, 0.25 (now ``recall``): 0.840 / 1.22× / 0.62× / 0.40×. Held out (6-10) a
  conversation costs less against resending (its history is longer), 0.76 of dev's at the old values.
- a plain chat (no tool call or result in it; `ChatTuning`) departs from these values. The
  conversation's own turns paid for the full block too: the conversation alone cost 1.06× of
  resending everything at r = 0.1 held out (5b3c15d), 1.31× on conv-26, while most of its messages
  only tell (news, reactions: `memory.prompt.need`) and need the strongest matches at most. Its
  questions lost evidence the fresh compile found in two ways: the block starved by a stable part
  grown with recent questions and replies (1,000-2,200 of 4,000 tokens), and a very strong match
  whose floor cut the rest of a small block. Measured on LoCoMo conv-26 (budget 4,000,
  `benchmarks.cache_cost --conversations 1 --sequence-only`, in sequence / cost at r = 0.1 /
  conversation alone at r = 0.1): as before 0.793 / 0.93× / 1.31×; a message that tells within
  0.25 of the room, floor 0.4: 0.807 / 0.82× / 1.04×; and a rebase below 0.4 of the room: 0.827 /
  0.91× / 1.12× (an evidence share of 0.75 instead of 0.6: the same, the room binds); and no
  floor below 0.25 of the room, tells within 0.15: 0.840 / 0.89× / 1.03× (rebase below 0.3:
  0.833 / 0.86× / 1.01×); and a base of 0.3, tells within 0.1: 0.847 / 0.87× / 0.96× (rebase
  below 0.3: 0.847 / 0.83× / 0.93×); rebase below 0.35, tells down to 0.5 of the best within
  0.08: 0.853 / 0.84× / 0.91× (held out: 0.763 against a fresh compile's 0.834, RESULTS.md F2,
  20 of its misses starved at 0.36-0.50 of the room, 21 floored past 0.25 of it); **rebase and
  floor from 0.5 of the room: 0.853 / 0.94× / 0.98×** (0.45 / 0.4: 0.853 / 0.90× / 0.95×). On
  conv-41 (`--conversations 3`) the last two: 0.822 / 0.58× / 0.60× and **0.849 / 0.64× /
  0.62×**. Tool loops (section H) keep the values above.
- ``recall``: every match out of view while the block has room (no floor), within 0.7 of the room,
  a small base: the closest to a fresh compile's evidence, at the most uncached tokens per question.

Measured figures (cost against resending everything, recall of questions asked alone and in
sequence) are in benchmarks/RESULTS.md section F.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from memory.errors import InvalidArgumentError

__all__ = ["CachePrices", "ChatTuning", "LayoutPolicy", "POLICIES", "get_policy"]


@dataclass(frozen=True)
class CachePrices:
    """What the provider charges for its prompt cache, per token, relative to an uncached input
    token: `write` for a token a request writes to the cache, `read` for one read from it
    (Anthropic's 5-minute cache: 1.25 / 0.1). `memory.prompt.pricing` lays prompts out by them."""

    write: float
    read: float


@dataclass(frozen=True)
class ChatTuning:
    """Where a plain chat's messages (no tool call or result in the conversation) depart from the
    policy's values, which tool loops keep. A message that asks (`memory.prompt.need.asks`: a
    question, a request) reaches for memory out of view: a smaller rebased frame (`base_fill`),
    a rebase as soon as its block is starved below `evidence_min_share` of the room, and the
    floor only once the block holds `evidence_min_block` of it. A message that only tells gets
    the strongest matches: down to `statement_floor` of the best, within `statement_share` of the
    room, on a frame and after a rebase's window alike."""

    base_fill: float = 0.3
    evidence_min_share: float = 0.5
    evidence_min_block: float = 0.5
    statement_floor: float = 0.5
    statement_share: float = 0.08


@dataclass(frozen=True)
class LayoutPolicy:
    name: str = "cache"
    # A rebase (and a fresh compile): the state block within `state_share` of the room; the newest
    # turns within `window_share` (the very last exchange may take `window_floor_share`).
    state_share: float = 0.15
    window_share: float = 0.15
    window_floor_share: float = 0.30
    # ... and the frame's base (state, best-ranked evidence) plus the window fill at most `base_fill`
    # of the room: the rest is for this question's other evidence, then for the turns to come.
    base_fill: float = 0.4
    # ... and this question's own evidence (after the window) within `rebase_evidence_share` of the
    # room; 1.0: all the room the frame leaves (the fresh compile's).
    rebase_evidence_share: float = 1.0
    # On a stored frame, the question's own evidence (after the window, uncached): the candidates
    # out of view, best first, down to `evidence_floor` of the best one's fused score, within
    # `evidence_share` of the room (or a fresh layout's evidence room, if smaller). The floor is
    # relative to what is out of view: a run of recent look-alike questions in view must not hide
    # the turn the question asks about. When the block does not fit in the room the stable part
    # leaves, its best part fills that room; the prompt is rebased only when that room is below
    # `evidence_min_share` of the room (or the stable part no longer fits at all).
    evidence_floor: float = 0.15
    evidence_share: float = 0.6
    evidence_min_share: float = 0.2
    # The floor applies once the block holds `evidence_min_block` of the room: below that, the next
    # best candidates go in whatever their score (a question whose evidence is one strong hit and
    # weaker ones still gets the weaker ones).
    evidence_min_block: float = 0.0
    # A plain chat (no tool loop) departs from the values above as `chat` says; None: it does not.
    chat: ChatTuning | None = ChatTuning()
    # The route's cache prices when it knows them (the Anthropic route): the shares above are then
    # priced per request (`memory.prompt.pricing`). None: as tuned above.
    prices: CachePrices | None = None

    def for_chat(self, asking: bool) -> LayoutPolicy:
        """The policy for one message of a plain chat (not a tool loop): the `chat` tuning's
        values, and for a message that only tells (`asking` false) its smaller block."""
        chat = self.chat
        if chat is None:
            return self
        tuned = replace(self, base_fill=chat.base_fill, evidence_min_share=chat.evidence_min_share,
                        evidence_min_block=chat.evidence_min_block)
        if asking:
            return tuned
        share = min(tuned.evidence_share, chat.statement_share)
        return replace(tuned, evidence_floor=max(tuned.evidence_floor, chat.statement_floor), evidence_share=share,
                       rebase_evidence_share=min(tuned.rebase_evidence_share, share), evidence_min_block=0.0)


POLICIES: dict[str, LayoutPolicy] = {
    "cache": LayoutPolicy(),
    "recall": LayoutPolicy(name="recall", base_fill=0.3, evidence_floor=0.0, evidence_share=0.7, evidence_min_share=0.25,
                           chat=None),
}


def get_policy(name: str) -> LayoutPolicy:
    try:
        return POLICIES[name]
    except KeyError:
        raise InvalidArgumentError(f"unknown layout policy {name!r}; expected one of {sorted(POLICIES)}") from None
