"""Protections from the live track record: lock a market whose recent signals keep losing.

Two guards, after freqtrade's StoplossGuard and LowProfitPairs (defined anew here, per market):

- **stoploss_guard**: when a stop closes a signal and at least N signals of the market were stopped
  (at a loss) within the W hours up to that close, the market is locked for C hours from that close.
- **low_profit**: when a signal of the market closes and the mean realised net of its last M closed
  signals (counting only closes within the lookback L up to that close) is below a threshold, the
  market is locked for C hours from that close. Fewer than M closes in the lookback: no verdict.

A lock only makes a market's candidates paper (they are still stored and tracked), so the forward
record keeps accumulating and a lock releases on its own when its cool-down ends.

Locks are a pure function of the market's closed signals and the time: no lock state is written or
read. The lock in force at `now` is the latest one engaged by a close in (now - C, now], which needs the
closes since now - C - max(W, L). The same function answers the signal step and GET /performance, so
the two can never disagree on a lock. Pure: no boto3, no clock, no env.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from traderai.contracts import ClosedReason, PaperReason, ProtectionSettings, Signal, iso_utc, parse_iso_utc


@dataclass(frozen=True, slots=True)
class Close:
    """One closed signal as the guards read it."""

    signal_id: str
    closed_at: datetime
    stopped_at_loss: bool
    realised_net_pct: float


@dataclass(frozen=True, slots=True)
class Lock:
    """A market locked by a guard until `until`, with the numbers that engaged it."""

    symbol: str
    protection: str  # a PaperReason value: protection_stoploss_guard | protection_low_profit
    engaged_at: str  # ISO-8601 UTC: the close that engaged it
    until: str  # ISO-8601 UTC
    message: str

    def to_dict(self) -> dict[str, str]:
        return {"symbol": self.symbol, "protection": self.protection, "engaged_at": self.engaged_at,
                "until": self.until, "message": self.message}


def close_of(signal: Signal) -> Close | None:
    """The guards' view of a stored signal; None while it is open, or closed unpriced (no market data)."""
    if signal.closed_at is None or signal.realised_net_pct is None or not math.isfinite(signal.realised_net_pct):
        return None
    if signal.closed_reason == ClosedReason.NO_MARKET_DATA:  # the rest never priced: not a market verdict
        return None
    try:
        closed_at = parse_iso_utc(signal.closed_at, "closed_at")
    except ValueError:
        return None
    stopped = signal.closed_reason == ClosedReason.STOP or (signal.closed_reason is None and signal.status == "STOPPED")
    return Close(signal.signal_id, closed_at, stopped and signal.realised_net_pct < 0, signal.realised_net_pct)


def market_locks(symbol: str, closes: Iterable[Close], now: datetime, settings: ProtectionSettings) -> list[Lock]:
    """The locks in force on `symbol` at `now` (at most one per guard: the one lasting longest)."""
    known = sorted((c for c in closes if c.closed_at <= now), key=lambda c: (c.closed_at, c.signal_id))
    locks = []
    for lock in (_stoploss_guard(symbol, known, now, settings), _low_profit(symbol, known, now, settings)):
        if lock is not None:
            locks.append(lock)
    return locks


def _stoploss_guard(symbol: str, closes: Sequence[Close], now: datetime, s: ProtectionSettings) -> Lock | None:
    if not s.stoploss_guard_stops:
        return None
    cooldown, window = timedelta(hours=s.stoploss_guard_cooldown_hours), timedelta(hours=s.stoploss_guard_window_hours)
    stops = [c for c in closes if c.stopped_at_loss]
    found: Lock | None = None
    for index, trigger in enumerate(stops):
        if trigger.closed_at + cooldown <= now:
            continue  # its cool-down is over
        in_window = [c for c in stops[: index + 1] if c.closed_at >= trigger.closed_at - window]
        if len(in_window) >= s.stoploss_guard_stops:
            found = Lock(symbol, PaperReason.PROTECTION_STOPLOSS_GUARD.value, iso_utc(trigger.closed_at),
                         iso_utc(trigger.closed_at + cooldown),
                         f"stoploss_guard: {len(in_window)} stops within {s.stoploss_guard_window_hours:g} h "
                         f"(limit {s.stoploss_guard_stops}); locked {s.stoploss_guard_cooldown_hours:g} h until "
                         f"{iso_utc(trigger.closed_at + cooldown)}")
    return found  # the last trigger's lock lasts longest


def _low_profit(symbol: str, closes: Sequence[Close], now: datetime, s: ProtectionSettings) -> Lock | None:
    if not s.low_profit_signals:
        return None
    cooldown, lookback = timedelta(hours=s.low_profit_cooldown_hours), timedelta(hours=s.low_profit_lookback_hours)
    found: Lock | None = None
    for index, trigger in enumerate(closes):
        if trigger.closed_at + cooldown <= now:
            continue
        recent = [c for c in closes[: index + 1] if c.closed_at >= trigger.closed_at - lookback]
        last = recent[-s.low_profit_signals:]
        if len(last) < s.low_profit_signals:
            continue
        mean = math.fsum(c.realised_net_pct for c in last) / len(last)
        if mean < s.low_profit_min_net_pct:
            found = Lock(symbol, PaperReason.PROTECTION_LOW_PROFIT.value, iso_utc(trigger.closed_at),
                         iso_utc(trigger.closed_at + cooldown),
                         f"low_profit: mean realised net {mean:+.2f}% over the last {len(last)} closed signals "
                         f"< {s.low_profit_min_net_pct:+.2f}%; locked {s.low_profit_cooldown_hours:g} h until "
                         f"{iso_utc(trigger.closed_at + cooldown)}")
    return found
