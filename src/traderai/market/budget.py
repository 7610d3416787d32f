"""A shard's share of the exchange's request-weight budget, enforced over a rolling minute.

`WeightBudget.delay(weight, now)` says how long a request of `weight` must wait so the weight granted in any
window of `window_s` stays within `weight_per_window`; `grant` records it. `acquire` is the async form the
ccxt source awaits before each request. The clock is injected, so the property test drives it in virtual time.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Awaitable, Callable


class WeightBudget:
    def __init__(self, weight_per_window: int, window_s: float = 60.0,
                 clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> None:
        if weight_per_window <= 0:
            raise ValueError("weight_per_window must be positive")
        self.limit, self.window_s = weight_per_window, window_s
        self._clock, self._sleep = clock, sleep
        self._granted: deque[tuple[float, int]] = deque()
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
        for granted_at, granted in self._granted:  # oldest first: wait until enough weight has left
            used -= granted
            if used + weight <= self.limit:
                return granted_at + self.window_s - now
        return self.window_s  # pragma: no cover - weight <= limit guarantees the loop returns

    def grant(self, weight: int, now: float) -> None:
        self._expire(now)
        self._granted.append((now, weight))
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
        while self._granted and self._granted[0][0] <= now - self.window_s:
            self._used -= self._granted.popleft()[1]
