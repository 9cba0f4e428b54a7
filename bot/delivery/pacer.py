"""When each destination may be called next: one budget per destination, shared by all replies.

A platform counts sends and edits to one channel together, whichever reply made them, so one
:class:`Pacer` serves the whole process and every :class:`~bot.delivery.stream.Delivery` takes
its slots from it. A 429 blocks the destination for everyone until ``retry_after`` has passed.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]

_SWEEP_FLOOR = 64


@dataclass(slots=True)
class _Budget:
    next_at: float = 0.0  # the platform's pace: no call before this
    blocked_until: float = 0.0  # a 429's retry_after: no call before this either

    def free_at(self) -> float:
        return max(self.next_at, self.blocked_until)


class Pacer:
    """Per-destination pace and 429 back-off, keyed by any string naming a destination.

    ``clock`` (monotonic seconds) and ``sleep`` are injectable so tests can run on fake time.
    A destination whose times have passed carries no information and is forgotten, so the
    table holds only destinations called within the last ``min_interval`` or ``retry_after``.
    """

    def __init__(self, *, clock: Clock = time.monotonic, sleep: Sleep = asyncio.sleep) -> None:
        self._clock = clock
        self._sleep = sleep
        self._budgets: dict[str, _Budget] = {}
        self._sweep_above = _SWEEP_FLOOR

    def __len__(self) -> int:
        """How many destinations are remembered (for tests and metrics)."""
        return len(self._budgets)

    def now(self) -> float:
        return self._clock()

    def delay(self, destination: str) -> float:
        """Seconds until ``destination`` may be called; 0 when it may be called now."""
        budget = self._budgets.get(destination)
        if budget is None:
            return 0.0
        return max(0.0, budget.free_at() - self._clock())

    async def wait(self, destination: str, min_interval: float, *, delay: float = 0.0) -> None:
        """Wait until ``destination`` may be called (and ``delay`` has passed), take the slot.

        Taking the slot means the next caller waits ``min_interval`` from now. The check is
        repeated after every sleep because a 429 or another reply may have moved the time.
        """
        not_before = self._clock() + delay
        while True:
            now = self._clock()
            budget = self._budgets.get(destination)
            ready = max(not_before, budget.free_at() if budget is not None else 0.0)
            if ready <= now:
                break
            await self._sleep(ready - now)
        if budget is None:
            budget = self._budgets[destination] = _Budget()
        budget.next_at = now + min_interval
        self._sweep(now)

    def penalize(self, destination: str, retry_after: float) -> None:
        """The platform said 429: no call to ``destination`` for ``retry_after`` seconds."""
        now = self._clock()
        budget = self._budgets.get(destination)
        if budget is None:
            budget = self._budgets[destination] = _Budget()
        budget.blocked_until = max(budget.blocked_until, now + max(0.0, retry_after))
        self._sweep(now)

    def _sweep(self, now: float) -> None:
        # Sweeping only when the table has doubled keeps the cost amortised O(1) per call.
        if len(self._budgets) <= self._sweep_above:
            return
        expired = [key for key, budget in self._budgets.items() if budget.free_at() <= now]
        for key in expired:
            del self._budgets[key]
        self._sweep_above = max(_SWEEP_FLOOR, 2 * len(self._budgets))
