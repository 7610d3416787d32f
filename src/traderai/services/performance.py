"""GET /performance: the track record of the stored signals over a window, per symbol and overall.

Computed from the signals created in the window (one paginated Query on the `by_time` index with the
window as the key condition, never a Scan), and cached per warm container for `CACHE_SECONDS`, keyed
by the window as asked, so a page polling it costs one Query a minute. Rates are over CLOSED signals
(TP3_HIT, STOPPED, EXPIRED): an open signal's outcome is not known yet, so it is only counted. A signal
closed without market data (`closed_reason` no_market_data: the rest of its position has no exit price)
is closed, but its outcome is not known either: it is counted as `unpriced` and left out of the win rate
and the profit figures.

Windows: `?window=7d|30d|90d|all` ends at `until` (default: now), or `since`/`until` as before (default:
the last 30 days). "Now" is the functions' clock (`traderai.wiring.now`): the wall clock on AWS, the replay clock
in the local stack, so the demo's windows cover the replayed days. The arithmetic (win rate, expectancy,
profit factor, drawdown) is the pure `core.track_record`; its definitions travel in the report.

Tradeable and paper signals are reported apart (`tradeable`, `paper`): a signal without the `tradeable`
field (stored before it existed) counts as tradeable.

`locks` are the protections in force at the report's `computed_at` (core/protections.py), computed by the
same pure function the signal step uses, from the closed signals of the guards' history (one more Query
on `by_time`, cached with the report).
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime, timedelta

from pydantic import Field

from traderai.adapters.signal_store import SignalOutcome, SignalStore
from traderai.contracts import ClosedReason, Signal, SignalStatus, Strategy, iso_utc
from traderai.core.protections import Close, close_of, market_locks
from traderai.core.track_record import DEFINITIONS, drawdown_span, r_multiple, summarise
from traderai.services import api

CACHE_SECONDS = 60.0
CACHE_ENTRIES = 64
DEFAULT_WINDOW = timedelta(days=30)
MAX_WINDOW = timedelta(days=366)
MAX_SIGNALS = 20_000  # reads per computation; beyond it the report says `truncated`
MAX_CURVE_POINTS = 2_000  # equity-curve points per group; beyond, thinned (the drawdown's ends always kept)
PARAMETERS = frozenset({"since", "until", "window"})
WINDOWS: dict[str, timedelta | None] = {"7d": timedelta(days=7), "30d": timedelta(days=30),
                                        "90d": timedelta(days=90), "all": None}
CLOSED = (SignalStatus.TP3_HIT, SignalStatus.STOPPED, SignalStatus.EXPIRED)
Tracked = Signal | SignalOutcome  # a whole signal, or the outcome fields the report reads (GET /performance)


class Exits(api.ApiModel):
    """How the closed signals left: a signal that hit TP1 then its stop counts under tp1 and stop."""

    tp1: int = Field(description="closed signals that exited a part at TP1")
    tp2: int
    tp3: int = Field(description="closed with all three targets")
    stop: int = Field(description="the rest left at the stop (STOPPED)")
    expiry: int = Field(description="the rest left at the market at expiry (EXPIRED, priced)")
    unpriced: int = Field(description="EXPIRED without market data: the rest never priced")


class Stats(api.ApiModel):
    """Counts and outcome figures of a set of signals; rates and averages are over closed signals (null: none)."""

    signals: int
    open: int = Field(description="ACTIVE, TP1_HIT or TP2_HIT: still in play")
    closed: int = Field(description="TP3_HIT, STOPPED or EXPIRED")
    unpriced: int = Field(description="closed without market data to price the rest (exit_price null): "
                                      "left out of win_rate and the profit figures")
    tradeable: int = Field(description="signals marked tradeable (or stored before the mark existed)")
    paper: int = Field(description="paper signals: published for the record, not meant to be traded")
    by_status: dict[str, int]
    exits: Exits
    tp1_hit_rate: float | None = Field(description="closed signals that reached TP1 / closed")
    tp2_hit_rate: float | None
    tp3_hit_rate: float | None
    stop_rate: float | None
    expiry_rate: float | None
    wins: int = Field(description="closed priced signals with realised net profit > 0")
    losses: int = Field(description="closed priced signals with realised net profit < 0")
    win_rate: float | None = Field(description=DEFINITIONS["win_rate"])
    avg_realised_net_pct: float | None = Field(description=DEFINITIONS["avg_realised_net_pct"])
    avg_win_pct: float | None = Field(description="mean realised net of the wins, %")
    avg_loss_pct: float | None = Field(description="mean realised net of the losses, % (negative)")
    expectancy_pct: float | None = Field(description=DEFINITIONS["expectancy_pct"])
    expectancy_r: float | None = Field(description=DEFINITIONS["expectancy_r"])
    profit_factor: float | None = Field(description=DEFINITIONS["profit_factor"])
    max_drawdown_pct: float = Field(description=DEFINITIONS["max_drawdown_pct"])
    total_realised_net_pct: float = Field(description="sum of realised net profit % over closed signals, "
                                                      "unpriced ones excluded")
    avg_time_in_trade_hours: float | None


class EquityPoint(api.ApiModel):
    """One closed priced signal on the equity curve, in the order of `closed_at`."""

    closed_at: str
    signal_id: str
    realised_net_pct: float
    cumulative_net_pct: float = Field(description="sum of realised_net_pct up to and including this signal")


class TrackRecord(api.ApiModel):
    """Stats overall and per market, and the equity curve, of one group of signals (tradeable or paper)."""

    overall: Stats
    by_symbol: dict[str, Stats]
    equity_curve: list[EquityPoint]
    equity_curve_thinned: bool = Field(description=f"true if more than {MAX_CURVE_POINTS} points were thinned "
                                                   "for drawing (every figure is computed on all of them)")


class LockView(api.ApiModel):
    """A market locked by a protection: its candidates are paper until `until`."""

    symbol: str
    protection: str = Field(description="protection_stoploss_guard | protection_low_profit")
    engaged_at: str = Field(description="the close that engaged the lock, ISO-8601 UTC")
    until: str = Field(description="when the lock releases, ISO-8601 UTC")
    message: str = Field(description="the lock's numbers, as the decision log gives them")


class PerformanceReport(api.ApiModel):
    """The track record of the signals created in [since, until] (since null: all time)."""

    window: str | None = Field(description="7d, 30d, 90d or all when asked by name; null for since/until")
    since: str | None
    until: str
    computed_at: str
    truncated: bool = Field(description=f"true if the window held more than {MAX_SIGNALS} signals "
                                        "(the newest are reported)")
    definitions: dict[str, str]
    overall: Stats = Field(description="every signal of the window, tradeable and paper")
    by_symbol: dict[str, Stats]
    tradeable: TrackRecord
    paper: TrackRecord
    locks: list[LockView] = Field(default_factory=list, description=(
        "protections in force at computed_at: while a market is locked its signals are paper "
        "(protection_stoploss_guard, protection_low_profit), whatever the window"))


def is_paper(signal: Tracked) -> bool:
    """A paper signal says so (`tradeable` false); one stored before the field existed is tradeable."""
    return not signal.is_tradeable


def _priced_in_close_order(signals: Iterable[Tracked]) -> list[Tracked]:
    closed = [s for s in signals if s.status in CLOSED and s.closed_reason != ClosedReason.NO_MARKET_DATA
              and s.realised_net_pct is not None]
    return sorted(closed, key=lambda s: (s.closed_at or s.updated_at or s.created_at, s.signal_id))


def _round(value: float | None, digits: int = 6) -> float | None:
    return None if value is None else round(value, digits)


def stats_of(signals: Iterable[Tracked]) -> Stats:
    """Pure: the Stats of these signals."""
    signals = list(signals)
    by_status = {status.value: 0 for status in SignalStatus}
    for signal in signals:
        by_status[signal.status] = by_status.get(signal.status, 0) + 1
    closed = [s for s in signals if s.status in CLOSED]

    priced = _priced_in_close_order(closed)
    unpriced = [s for s in closed if s.closed_reason == ClosedReason.NO_MARKET_DATA]

    def rate(predicate: Callable[[Tracked], bool]) -> float | None:
        return round(sum(1 for s in closed if predicate(s)) / len(closed), 6) if closed else None

    results = [s.realised_net_pct or 0.0 for s in priced]
    summary = summarise(results)
    r_multiples = [r for r in (r_multiple(s.realised_net_pct or 0.0, abs(s.entry_price - s.sl_price)
                                          / s.entry_price * 100.0, s.costs_pct) for s in priced) if r is not None]
    hours = [s.time_in_trade_seconds / 3600 for s in closed if s.time_in_trade_seconds is not None]
    paper = sum(1 for s in signals if is_paper(s))
    return Stats(
        signals=len(signals), open=len(signals) - len(closed), closed=len(closed), unpriced=len(unpriced),
        tradeable=len(signals) - paper, paper=paper, by_status=by_status,
        exits=Exits(tp1=sum(1 for s in closed if s.tp1_hit_at), tp2=sum(1 for s in closed if s.tp2_hit_at),
                    tp3=sum(1 for s in closed if s.tp3_hit_at),
                    stop=sum(1 for s in closed if s.status == SignalStatus.STOPPED),
                    expiry=sum(1 for s in closed if s.status == SignalStatus.EXPIRED) - len(unpriced),
                    unpriced=len(unpriced)),
        tp1_hit_rate=rate(lambda s: s.tp1_hit_at is not None),
        tp2_hit_rate=rate(lambda s: s.tp2_hit_at is not None),
        tp3_hit_rate=rate(lambda s: s.tp3_hit_at is not None),
        stop_rate=rate(lambda s: s.status == SignalStatus.STOPPED),
        expiry_rate=rate(lambda s: s.status == SignalStatus.EXPIRED),
        wins=summary.wins, losses=summary.losses,
        win_rate=_round(summary.win_rate),
        avg_realised_net_pct=_round(summary.avg_net_pct),
        avg_win_pct=_round(summary.avg_win_pct), avg_loss_pct=_round(summary.avg_loss_pct),
        expectancy_pct=_round(summary.expectancy_pct),
        expectancy_r=_round(sum(r_multiples) / len(r_multiples)) if r_multiples else None,
        profit_factor=_round(summary.profit_factor, 4),
        max_drawdown_pct=round(summary.max_drawdown_pct, 6),
        total_realised_net_pct=round(summary.total_net_pct, 6),
        avg_time_in_trade_hours=round(sum(hours) / len(hours), 4) if hours else None,
    )


def equity_curve(signals: Iterable[Tracked], max_points: int = MAX_CURVE_POINTS) -> tuple[list[EquityPoint], bool]:
    """Pure: the cumulative realised net of the closed priced signals in close order; thinned past
    `max_points` (evenly, always keeping the last point and the maximum drawdown's peak and trough)."""
    priced = _priced_in_close_order(signals)
    total, points = 0.0, []
    for s in priced:
        total += s.realised_net_pct or 0.0
        points.append(EquityPoint(closed_at=s.closed_at or s.updated_at or s.created_at, signal_id=s.signal_id,
                                  realised_net_pct=round(s.realised_net_pct or 0.0, 6),
                                  cumulative_net_pct=round(total, 6)))
    if len(points) <= max_points:
        return points, False
    keep = set(range(0, len(points), -(-len(points) // (max_points - 3)))) | {len(points) - 1}
    span = drawdown_span([p.realised_net_pct for p in points])
    if span is not None:
        keep |= {i for i in span if i >= 0}
    return [points[i] for i in sorted(keep)], True


def track_record(signals: list[Tracked]) -> TrackRecord:
    """Pure: overall and per-market Stats, and the equity curve, of one group of signals."""
    curve, thinned = equity_curve(signals)
    return TrackRecord(overall=stats_of(signals), by_symbol=_by_symbol(signals), equity_curve=curve,
                       equity_curve_thinned=thinned)


def _by_symbol(signals: Sequence[Tracked]) -> dict[str, Stats]:
    symbols = sorted({s.symbol for s in signals})
    return {symbol: stats_of(s for s in signals if s.symbol == symbol) for symbol in symbols}


def performance_report(signals: Sequence[Tracked], since: str | None, until: str, computed_at: datetime,
                       truncated: bool = False, window: str | None = None) -> PerformanceReport:
    """Pure: overall and per-symbol Stats of the signals of a window, tradeable and paper apart."""
    paper = [s for s in signals if is_paper(s)]
    tradeable = [s for s in signals if not is_paper(s)]
    return PerformanceReport(
        window=window, since=since, until=until, computed_at=iso_utc(computed_at), truncated=truncated,
        definitions=DEFINITIONS, overall=stats_of(signals), by_symbol=_by_symbol(signals),
        tradeable=track_record(tradeable), paper=track_record(paper))


def window_of(since: datetime | None, until: datetime | None, now: datetime,
              window: str | None = None) -> tuple[str | None, str]:
    """[since, until] as stored-precision ISO strings (since None: all time): a named window ending at
    `until`, else since/until (default the last 30 days, at most 366 days)."""
    if window is not None and since is not None:
        raise api.BadRequest("window: give window or since, not both")
    if window is not None and window not in WINDOWS:
        raise api.BadRequest(f"window: {window!r} is not one of {', '.join(WINDOWS)}")
    until = until or now
    if window is not None:
        length = WINDOWS[window]
        if length is None:  # all time: no lower bound on created_at
            return None, api.signal_filters(until=until).until or iso_utc(until)
        since = _minus(until, length)
    since = since or _minus(until, DEFAULT_WINDOW)
    if since > until:
        raise api.BadRequest(f"since: {iso_utc(since)} is after until: {iso_utc(until)}")
    if until - since > MAX_WINDOW:
        raise api.BadRequest(f"since/until: the window is longer than {MAX_WINDOW.days} days")
    filters = api.signal_filters(since=since, until=until)
    return filters.since or iso_utc(since), filters.until or iso_utc(until)


def _minus(until: datetime, length: timedelta) -> datetime:
    """`until - length`; a window reaching before the year 1 (until=0001-01-03T00:00:00Z, found by the API
    fuzzer) starts at the beginning of the calendar, like a since that UTC cannot hold."""
    try:
        return until - length
    except OverflowError:
        return datetime.min.replace(tzinfo=UTC)


class PerformanceCache:
    """Reports per asked window, kept `ttl` seconds in this warm container (bounded, thread-safe)."""

    def __init__(self, ttl: float = CACHE_SECONDS, entries: int = CACHE_ENTRIES,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl, self._entries, self._clock = ttl, entries, clock
        self._reports: OrderedDict[tuple[str | None, str | None], tuple[float, PerformanceReport]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: tuple[str | None, str | None], compute: Callable[[], PerformanceReport]
            ) -> PerformanceReport:
        now = self._clock()
        with self._lock:
            hit = self._reports.get(key)
            if hit is not None and hit[0] > now:
                return hit[1]
        report = compute()
        with self._lock:
            self._reports[key] = (now + self.ttl, report)
            self._reports.move_to_end(key)
            while len(self._reports) > self._entries:
                self._reports.popitem(last=False)
        return report

    def clear(self) -> None:
        with self._lock:
            self._reports.clear()


CACHE = PerformanceCache()


def performance(store: SignalStore, since: datetime | None, until: datetime | None, now: datetime,
                cache: PerformanceCache = CACHE, window: str | None = None, *, strategy: Strategy) -> PerformanceReport:
    """The report of the window, from the cache when a fresh one exists (key: the window as asked), with the
    protection locks `strategy`'s guards hold at `now`."""
    bounds = window_of(since, until, now, window)
    # The bounds as stored-precision text (since rounds up): an absent bound stays None, so "the last 30
    # days" is one entry rather than one per second of `now`.
    key = (window or (bounds[0] if since else None), bounds[1] if until else None)

    def compute() -> PerformanceReport:
        signals = store.outcomes_between(*bounds, limit=MAX_SIGNALS + 1)
        report = performance_report(signals[:MAX_SIGNALS], *bounds, computed_at=now,
                                    truncated=len(signals) > MAX_SIGNALS, window=window)
        report.locks = current_locks(store, strategy, now)
        return report

    return cache.get(key, compute)


def current_locks(store: SignalStore, strategy: Strategy, now: datetime) -> list[LockView]:
    """The protections in force at `now`, every market: the signal step's rule on the same closed signals."""
    settings = strategy.protections
    if not settings.history_hours:
        return []
    since = iso_utc(now - timedelta(hours=settings.history_hours + strategy.signal_ttl_hours))
    closes: dict[str, list[Close]] = {}
    for signal in store.closed_signals_of_all(since):
        close = close_of(signal)
        if close is not None:
            closes.setdefault(signal.symbol, []).append(close)
    return [LockView(**lock.to_dict()) for symbol in sorted(closes)
            for lock in market_locks(symbol, closes[symbol], now, settings)]
