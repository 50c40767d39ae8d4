"""How a session's prompts trade the provider's prompt cache against fresh evidence per question.

A layout (see `memory.prompt.layout`) keeps a stable top that the provider caches and adds evidence for
each question after it. When the question reaches far beyond what the prompt shows, rebuilding the
top around it (a *rebase*, the library's fresh compile) brings the most evidence, at the price of one
uncached prompt. `LayoutPolicy` holds every threshold of that trade; its presets were tuned on LoCoMo
conversations 1-5 only (benchmarks section F; 6-10 are reported as held out):

- ``cache`` (the default): rebase when the budget forces it, or when the question's strongest
  matches out of view do not fit in the room the stable part leaves (or stand far above anything in
  view). On the dev conversations at budget 4,000: cached share 0.80, input cost 0.63× / 0.39× /
  0.30× of resending everything at cache price ratios 0.1 / 0.25 / 0.5; evidence recall of a
  question asked through the proxy 0.78 against a fresh compile's 0.88.
- ``recall``: rebase whenever the question clearly needs memory out of view and the room left is
  small. Same conversations: cached share 0.67, cost 0.81× / 0.44× / 0.30×, recall 0.84.
"""

from __future__ import annotations

from dataclasses import dataclass

from memory.errors import InvalidArgumentError

__all__ = ["LayoutPolicy", "POLICIES", "get_policy"]


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
    # A question *needs* memory when its best match out of view (fused retrieval score, roughly
    # standard deviations above the candidates' mean) beats its best match in view: *strongly* by
    # `need_margin` (and scoring at least `need_min_score`), else *weakly*.
    need_min_score: float = 0.5
    need_margin: float = 1.0
    # Weak need: evidence for this question only, within `weak_share` of the room.
    weak_share: float = 0.15
    # Strong need: evidence filling the room left; a rebase when that room is below `rebase_room` of
    # a fresh layout's, unless (`strong_fit`) every strong match fits in it and none stands
    # `rebase_margin` above the best match in view.
    rebase_room: float = 0.8
    strong_fit: bool = True
    rebase_margin: float = 2.5


POLICIES: dict[str, LayoutPolicy] = {
    "cache": LayoutPolicy(),
    "recall": LayoutPolicy(name="recall", strong_fit=False),
}


def get_policy(name: str) -> LayoutPolicy:
    try:
        return POLICIES[name]
    except KeyError:
        raise InvalidArgumentError(f"unknown layout policy {name!r}; expected one of {sorted(POLICIES)}") from None
