"""A layout priced by the provider's cache: the policy's shares, per request, for a route that knows
what its provider charges to write and read the prompt cache (`LayoutPolicy.prices`).

A layout pays three ways past the budget: the frame (system, base, window) is read from the cache
on every request (`read` per token); a rebase writes the rebuilt frame (`write` per token, once);
the question's own evidence goes uncached (1 per token, every request that carries it). Resending
everything instead reads the whole conversation from the cache each request, so what memory saves
per request is `read` times what it leaves out, and that is all it can spend without costing more
than the client would. Two rules follow, applied when the route passes its prices (the Anthropic
route: 1.25 / 0.1; the OpenAI routes pass none and keep the recall-tuned policy of section F):

- the question's evidence on a frame, and after the window of a rebase, takes at most
  `EVIDENCE_SPEND` of that saving: `EVIDENCE_SPEND * read * left_out` tokens (and never more than
  the policy's share of the room). Little is left out just past the budget, so little evidence goes
  then; the more the frame leaves out, the more each question may bring back;
- a rebased frame (the base and the window) fills `PRICED_FILL` of the policy's shares (the last
  exchange keeps its floor share: the model always sees it verbatim after a rebase): a rebase
  the budget forces writes that much less, and the smaller frame serves more requests before the
  next one (at Anthropic's prices a rebase at 0.6 of the room wrote about 12.5 requests' worth of
  reads of the frame, and the frame was full again after 4-6 turns);
- a rebase the budget does not force (the question's evidence does not fit the room the frame
  leaves) is taken only when it pays for itself at once: when writing the rebuilt stable part
  costs less than reading the kept one (`write * rebuilt < read * kept`). Otherwise the frame is
  kept and the evidence's best part fills the room left. At Anthropic's prices that means the
  frame is rebuilt only when the budget forces it.

`EVIDENCE_SPEND` and `PRICED_FILL` were chosen on section I's session at 30 turns (budgets 6,000 and
12,000); the other lengths and budgets it reports check them. Measured in benchmarks/RESULTS.md
section I.
"""

from __future__ import annotations

from dataclasses import replace

from memory.prompt.policy import CachePrices, LayoutPolicy

__all__ = ["ANTHROPIC_CACHE", "EVIDENCE_SPEND", "PRICED_FILL", "priced_fill", "priced_policy"]

# Anthropic's 5-minute cache: a write costs 1.25x an input token, a read 0.1x.
ANTHROPIC_CACHE = CachePrices(write=1.25, read=0.1)
# The share of the frame's saving over resending everything a question's evidence may spend.
EVIDENCE_SPEND = 0.25
# The share of the policy's frame fill (base, window) a rebase builds when writes are priced.
PRICED_FILL = 1 / 3


def priced_fill(policy: LayoutPolicy) -> LayoutPolicy:
    """`policy` with the rebased frame's fill for a priced cache (unchanged without prices)."""
    if policy.prices is None:
        return policy
    return replace(policy, base_fill=policy.base_fill * PRICED_FILL, window_share=policy.window_share * PRICED_FILL)


def priced_policy(policy: LayoutPolicy, available: int, left_out: int, rebuilt: int, kept: int) -> LayoutPolicy:
    """`policy` for one request by the rules in the module docstring: `available` is the room
    below the budget, `left_out` the conversation's tokens the stable part does not show, `rebuilt`
    the stable part a rebase would build, `kept` the stored frame's (0 without one). Unchanged when
    the policy carries no prices."""
    prices = policy.prices
    if prices is None or available <= 0:
        return policy
    cap = EVIDENCE_SPEND * prices.read * max(left_out, 0) / available
    share = min(policy.evidence_share, cap)
    pays = prices.write * rebuilt < prices.read * kept
    return replace(policy, evidence_share=share, rebase_evidence_share=min(policy.rebase_evidence_share, share),
                   evidence_min_share=policy.evidence_min_share if pays else 0.0)
