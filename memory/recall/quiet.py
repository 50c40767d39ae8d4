"""When background embedding may run: in the quiet between turns, not during them.

A turn's planning and committing (`Session.prepare_turn`, `Session.commit_turn`) are what a client
waits for; the background embedding of the previous turn's chunks is not. On two cores a model
batch running beside a turn's planning made an agent step's own CPU time 2.4x longer (pvlib
replay through the proxy, `benchmarks.agent_profile`: 39 ms per step without the model, 95 ms with
it, the model's batches being two thirds of the process's CPU). So a background batch starts only
once no turn has been planned or committed for `quiet_s`: an agent's tool loop sends its next
request right after the reply, and its embedding then runs while the provider answers (the
proxy is idle then) or once the loop pauses. Never starved: a batch that has waited `max_wait_s`
runs anyway, so a proxy under constant load still gets its vectors (a request's own question is
embedded on its path, as before; this only schedules the background).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

__all__ = ["TurnActivity", "QUIET_S", "MAX_WAIT_S"]

QUIET_S = 0.25
MAX_WAIT_S = 2.0


class TurnActivity:
    """Counts the turns being planned or committed, and says how long a background batch should
    still wait. `clock` is monotonic seconds (a test passes its own)."""

    def __init__(self, quiet_s: float = QUIET_S, max_wait_s: float = MAX_WAIT_S, clock: Callable[[], float] = time.monotonic) -> None:
        self.quiet_s = quiet_s
        self.max_wait_s = max_wait_s
        self._clock = clock
        self._active = 0
        self._last = float("-inf")  # when the last turn work ended

    @asynccontextmanager
    async def busy(self) -> AsyncIterator[None]:
        """Turn work in progress for as long as the block runs."""
        self._active += 1
        try:
            yield
        finally:
            self._active -= 1
            self._last = self._clock()

    def wait_needed(self, since: float) -> float:
        """Seconds a batch that started waiting at `since` should still wait (0: run now)."""
        now = self._clock()
        left = self.max_wait_s - (now - since)
        if left <= 0:
            return 0.0
        quiet_left = self.quiet_s if self._active else self._last + self.quiet_s - now
        return max(0.0, min(quiet_left, left))

    async def quiet(self) -> None:
        """Return once a background batch may run (see the module docstring)."""
        since = self._clock()
        while (wait := self.wait_needed(since)) > 0:
            await asyncio.sleep(wait)  # a timer, re-checked: turn work may have come and gone meanwhile
