"""How a session's prompts trade the provider's prompt cache against fresh evidence per question.

A layout (see `memory.prompt.layout`) keeps a stable top that the provider caches and adds evidence for
each question after it. When the question reaches far beyond what the prompt shows, rebuilding the
top around it (a *rebase*, the library's fresh compile) brings the most evidence, at the price of one
uncached prompt. `LayoutPolicy` holds every threshold of that trade; its presets were tuned on LoCoMo
dev conversations only (benchmarks section F; 6-10 are reported as held out):

- ``cache`` (the default): each question's own evidence after the cached part, the matches out
  of view down to 0.4 of the best one's score within 0.35 of the room; a rebase when the budget
  forces it or the room the stable part leaves is below 0.15 of the room. Chosen on LoCoMo 1-2 at
  budget 4,000 with the questions asked in sequence (section F's protocol), against 0.5 / 0.25 /
  0.10: recall in sequence 0.766 against 0.714, alone 0.801 against 0.758, at cost 0.70× / 0.41×
  / 0.31× against 0.61× / 0.38× / 0.30× (main before: 0.589, 0.784, 0.69× / 0.39× / 0.29×).
- ``recall``: weaker matches too, within a larger share: closer to a fresh compile's evidence, at
  more uncached tokens per question and more rebases.

Measured figures (cost against resending everything, recall of questions asked alone and in
sequence) are in benchmarks/RESULTS.md section F.
"""

from __future__ import annotations

from dataclasses import dataclass

from memory.errors import InvalidArgumentError

__all__ = ["CachePrices", "LayoutPolicy", "POLICIES", "get_policy"]


@dataclass(frozen=True)
class CachePrices:
    """What the provider charges for its prompt cache, per token, relative to an uncached input
    token: `write` for a token a request writes to the cache, `read` for one read from it
    (Anthropic's 5-minute cache: 1.25 / 0.1). `memory.prompt.pricing` lays prompts out by them."""

    write: float
    read: float


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
    base_fill: float = 0.6
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
    evidence_floor: float = 0.4
    evidence_share: float = 0.35
    evidence_min_share: float = 0.15
    # The route's cache prices when it knows them (the Anthropic route): the shares above are then
    # priced per request (`memory.prompt.pricing`). None: as tuned above.
    prices: CachePrices | None = None

POLICIES: dict[str, LayoutPolicy] = {
    "cache": LayoutPolicy(),
    "recall": LayoutPolicy(name="recall", evidence_floor=0.3, evidence_share=0.5),
}


def get_policy(name: str) -> LayoutPolicy:
    try:
        return POLICIES[name]
    except KeyError:
        raise InvalidArgumentError(f"unknown layout policy {name!r}; expected one of {sorted(POLICIES)}") from None
