"""The outcome rule: how a signal's trade plays out over the candles that follow it.

One pure function, `advance`, shared by the live tracker (TrackFunction) and the backtester, so a
signal's tracked outcome and its backtested outcome can never disagree. Plain floats and ints only:
no numpy, no clock, no I/O.

The rule (docs/lifecycle.md):

- Only candles closed after `created_at` and by `expires_at` count. The entry is the close of the
  signal candle and `created_at` follows it by seconds, so the candle forming at creation counts: the
  trade is open for all of it but those seconds (skipping it would miss a stop hit in the trade's
  first candle, and disagree with the backtest, which plays candles row+1 .. row+life).
- Partial exits: TP_k closes the weight `w_k` of the position at the TP_k price; several TPs may be
  reached in one candle. The stop closes whatever is left at the stop price (the stop is not moved).
- A candle that reaches the stop AND a not-yet-hit TP is resolved conservatively: the stop came
  first (OHLC cannot tell the order), so those TPs do not count.
- At expiry the rest is closed at the close of the last candle inside the life (market exit).
- No price is ever invented. If no candle of the life is known at expiry, or the market serves no
  candles at all for `NO_DATA_GRACE_CANDLES` candles past expiry (`expire_unpriced`: delisted, removed
  from MARKETS, a feed that stays stale), the trade is EXPIRED with `exit_price` None and
  `closed_reason` no_market_data: its realised profit is that of the targets already hit, and the rest
  of the position, never priced, realises (and is charged costs for) nothing.
- Costs are always paid, in proportion to the weight exited: net = Σ w·gross% − (Σ w)·costs%.
- Times are candle CLOSE times: the moment the hit is known, never earlier.

Statuses only move forward: ACTIVE → TP1_HIT → TP2_HIT → TP3_HIT, and any open status → STOPPED or
EXPIRED. TP3_HIT, STOPPED and EXPIRED are final.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import NamedTuple

from traderai.contracts import ClosedReason, SignalStatus

TARGET_STATUSES = (SignalStatus.ACTIVE, SignalStatus.TP1_HIT, SignalStatus.TP2_HIT, SignalStatus.TP3_HIT)
FINAL_STATUSES = frozenset({SignalStatus.TP3_HIT, SignalStatus.STOPPED, SignalStatus.EXPIRED})
NO_DATA_GRACE_CANDLES = 2
"""Candles past `expires_at` the tracker waits for a market that serves no candles before closing its signals
unpriced: one failed fetch around expiry (an exchange hiccup) must not cost a trade its market exit."""
_RANK = {SignalStatus.ACTIVE: 0, SignalStatus.TP1_HIT: 1, SignalStatus.TP2_HIT: 2, SignalStatus.TP3_HIT: 3,
         SignalStatus.STOPPED: 4, SignalStatus.EXPIRED: 4}


class Bar(NamedTuple):
    """One closed candle: open time (UTC ms) and the prices the rule reads."""

    open_time_ms: int
    high: float
    low: float
    close: float


@dataclass(frozen=True, slots=True)
class TradeSetup:
    """What the rule needs of a signal: its levels, exit weights, costs and life (UTC ms)."""

    side: str  # LONG | SHORT
    entry: float
    take_profits: tuple[float, float, float]
    stop: float
    weights: tuple[float, float, float]
    costs_pct: float  # round trip, % of notional
    created_at_ms: int
    expires_at_ms: int
    candle_ms: int  # the timeframe's length

    @property
    def is_long(self) -> bool:
        return self.side == "LONG"

    def move_pct(self, price: float) -> float:
        """Gross % gained by exiting at `price` (negative for a loss), in the trade's direction."""
        direction = 1.0 if self.is_long else -1.0
        return direction * (price - self.entry) / self.entry * 100.0


@dataclass(frozen=True, slots=True)
class TradeState:
    """Where a trade stands: the status, when each target was hit, and the exit of the rest if closed.

    `realised_net_pct` covers the exits taken so far (partial TPs, plus the remainder once closed),
    costs charged in proportion to the weight exited.
    """

    status: SignalStatus = SignalStatus.ACTIVE
    tp_hit_ms: tuple[int | None, int | None, int | None] = (None, None, None)
    closed_at_ms: int | None = None
    exit_price: float | None = None  # price the remainder left at (stop, or market at expiry); None: unpriced
    closed_reason: ClosedReason | None = None  # why it is final (None while open)
    realised_gross_pct: float = 0.0
    realised_net_pct: float = 0.0
    exited_weight: float = 0.0

    @property
    def targets_hit(self) -> int:
        return sum(1 for hit in self.tp_hit_ms if hit is not None)

    @property
    def is_final(self) -> bool:
        return self.status in FINAL_STATUSES

    @property
    def last_event_ms(self) -> int | None:
        """Close time of the last candle that changed the trade (None while nothing happened)."""
        times = [t for t in (*self.tp_hit_ms, self.closed_at_ms) if t is not None]
        return max(times) if times else None


def status_rank(status: SignalStatus | str) -> int:
    """Order of the status machine: a new status never ranks below the one it replaces."""
    return _RANK[SignalStatus(status)]


def realised(setup: TradeSetup, targets_hit: int, exit_price: float | None) -> tuple[float, float, float]:
    """(gross %, net %, weight exited) of the first `targets_hit` TPs plus, if given, the rest at `exit_price`."""
    gross = sum(w * setup.move_pct(tp) for w, tp in zip(setup.weights[:targets_hit],
                                                       setup.take_profits[:targets_hit], strict=True))
    exited = sum(setup.weights[:targets_hit])
    if exit_price is not None:
        rest = 1.0 - exited
        gross += rest * setup.move_pct(exit_price)
        exited = 1.0
    return gross, gross - exited * setup.costs_pct, exited


def advance(setup: TradeSetup, state: TradeState, candles: Iterable[Bar], *, as_of_ms: int) -> TradeState:
    """Move `state` through the candles (oldest first) known at `as_of_ms`; returns the new state.

    Idempotent and incremental: candles at or before the last event are skipped, so a run may be given
    the same candles again, or the history in pieces, and reaches the same state.
    """
    if state.is_final:
        return state
    start_ms = max(setup.created_at_ms, state.last_event_ms or setup.created_at_ms)
    hits = list(state.tp_hit_ms)
    last_close: float | None = None
    for bar in candles:
        close_ms = bar.open_time_ms + setup.candle_ms
        if close_ms > setup.expires_at_ms:
            break
        if close_ms <= setup.created_at_ms:
            continue  # closed before the signal existed: the signal candle (entry = its close) or older
        last_close = bar.close
        if close_ms <= start_ms:
            continue  # already accounted for by an earlier run
        if _stop_reached(setup, bar):  # same-candle TP and SL: the stop first (conservative)
            return _closed(setup, hits, SignalStatus.STOPPED, close_ms, setup.stop, ClosedReason.STOP)
        done = len([h for h in hits if h is not None])
        for k in range(done, 3):
            if not _target_reached(setup, bar, setup.take_profits[k]):
                break
            hits[k] = close_ms
        if hits[2] is not None:
            return _closed(setup, hits, SignalStatus.TP3_HIT, close_ms, None, ClosedReason.ALL_TARGETS)
    if as_of_ms >= setup.expires_at_ms:
        if last_close is None:  # no candle of the life known: the rest has no market exit to book
            return _closed(setup, hits, SignalStatus.EXPIRED, setup.expires_at_ms, None, ClosedReason.NO_MARKET_DATA)
        return _closed(setup, hits, SignalStatus.EXPIRED, setup.expires_at_ms, last_close, ClosedReason.EXPIRY)
    done = len([h for h in hits if h is not None])
    if done == state.targets_hit:
        return state
    gross, net, exited = realised(setup, done, None)
    return replace(state, status=TARGET_STATUSES[done], tp_hit_ms=tuple(hits),  # type: ignore[arg-type]
                   realised_gross_pct=gross, realised_net_pct=net, exited_weight=exited)


def expire_unpriced(setup: TradeSetup, state: TradeState, *, as_of_ms: int) -> TradeState:
    """EXPIRED without an exit price, for a trade whose market served no candles at all by `as_of_ms`.

    Only once `NO_DATA_GRACE_CANDLES` candles past `expires_at` have gone by (before that the state is returned
    as it is: the market may come back and give the rest its market exit). The targets already hit keep their
    exits; the rest, never priced, realises nothing: `exit_price` None, `closed_reason` no_market_data.
    """
    if state.is_final or as_of_ms < setup.expires_at_ms + NO_DATA_GRACE_CANDLES * setup.candle_ms:
        return state
    return _closed(setup, list(state.tp_hit_ms), SignalStatus.EXPIRED, setup.expires_at_ms, None,
                   ClosedReason.NO_MARKET_DATA)


def resolve(setup: TradeSetup, candles: Iterable[Bar], *, as_of_ms: int) -> TradeState:
    """The whole outcome of a fresh signal over `candles` (the backtester's entry point)."""
    return advance(setup, TradeState(), candles, as_of_ms=as_of_ms)


def _stop_reached(setup: TradeSetup, bar: Bar) -> bool:
    return bar.low <= setup.stop if setup.is_long else bar.high >= setup.stop


def _target_reached(setup: TradeSetup, bar: Bar, target: float) -> bool:
    return bar.high >= target if setup.is_long else bar.low <= target


def _closed(setup: TradeSetup, hits: list[int | None], status: SignalStatus, closed_at_ms: int,
            exit_price: float | None, reason: ClosedReason) -> TradeState:
    """The final state; `exit_price` None leaves the rest unexited (unpriced), never priced at a guess."""
    done = len([h for h in hits if h is not None])
    gross, net, exited = realised(setup, done, exit_price if done < 3 else None)
    return TradeState(status=status, tp_hit_ms=tuple(hits), closed_at_ms=closed_at_ms,  # type: ignore[arg-type]
                      exit_price=exit_price if done < 3 else None, closed_reason=reason, realised_gross_pct=gross,
                      realised_net_pct=net, exited_weight=exited)
