"""A shard's share of the exchange's request-weight budget, enforced over a rolling minute.

`WeightBudget.delay(weight, now)` says how long a request of `weight` must wait so the weight granted in any
window of `window_s` stays within `weight_per_window`; `grant` records it. `acquire` is the async form the
ccxt source awaits before each request. The clock is injected, so the property test drives it in virtual time.

The window is half-open: a grant at `t` counts at every `now` with `now - t < window_s`, in exact arithmetic.
Each grant is stored with the first float time at which it has left (`_leaves_at`), and both the expiry and
the wait in `delay` compare against that one number: computing the boundary two ways (`t + window_s - now`
for the wait, `t <= now - window_s` for the expiry) rounds differently, and `delay` then said 0 while the old
grants still counted, so the request was granted over the budget.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from collections.abc import Awaitable, Callable
from fractions import Fraction


class WeightBudget:
    def __init__(self, weight_per_window: int, window_s: float = 60.0,
                 clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> None:
        if weight_per_window <= 0:
            raise ValueError("weight_per_window must be positive")
        self.limit, self.window_s = weight_per_window, window_s
        self._clock, self._sleep = clock, sleep
        self._granted: deque[tuple[float, int]] = deque()  # (time the grant leaves the window, weight)
        self._used = 0
        self._lock = asyncio.Lock()

    def delay(self, weight: int, now: float) -> float:
        """Seconds until a request of `weight` fits the window (0: now)."""
        if weight > self.limit:
            raise ValueError(f"a request of weight {weight} can never fit a budget of {self.limit}")
        self._expire(now)
        used, excess = self._used, self._used + weight - self.limit
        if excess <= 0:
            return 0.0
        for leaves_at, granted in self._granted:  # oldest first: wait until enough weight has left
            used -= granted
            if used + weight <= self.limit:
                return leaves_at - now  # > 0: not expired, so leaves_at > now (and distinct floats never subtract to 0)
        return self.window_s  # pragma: no cover - weight <= limit guarantees the loop returns

    def grant(self, weight: int, now: float) -> None:
        self._expire(now)
        self._granted.append((self._leaves_at(now), weight))
        self._used += weight

    def used(self, now: float) -> int:
        self._expire(now)
        return self._used

    async def acquire(self, weight: int) -> None:
        """Wait until `weight` fits, then take it (requests are granted in arrival order)."""
        async with self._lock:
            while (wait := self.delay(weight, self._clock())) > 0:
                await self._sleep(wait)
            self.grant(weight, self._clock())

    def _expire(self, now: float) -> None:
        while self._granted and self._granted[0][0] <= now:
            self._used -= self._granted.popleft()[1]

    def _leaves_at(self, granted_at: float) -> float:
        """The first float time at or after granted_at + window_s in exact arithmetic (the float sum may round
        below it: 1e-130 + 60.0 is 60.0, when that grant still counts)."""
        leaves_at = granted_at + self.window_s
        if Fraction(leaves_at) < Fraction(granted_at) + Fraction(self.window_s):
            leaves_at = math.nextafter(leaves_at, math.inf)
        return leaves_at
