"""GET /performance: the track record of the stored signals over a window, per symbol and overall.

Computed from the signals created in the window (one paginated Query on the `by_time` index with the
window as the key condition, never a Scan), and cached per warm container for `CACHE_SECONDS`, keyed
by the window as asked, so a page polling it costs one Query a minute. Rates are over CLOSED signals
(TP3_HIT, STOPPED, EXPIRED): an open signal's outcome is not known yet, so it is only counted. A signal
closed without market data (`closed_reason` no_market_data: the rest of its position has no exit price)
is closed, but its outcome is not known either: it is counted as `unpriced` and left out of the win rate
and the profit figures.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from typing import Annotated

from aws_lambda_powertools.event_handler.api_gateway import Router
from aws_lambda_powertools.event_handler.openapi.params import Query
from pydantic import AwareDatetime, BaseModel, BeforeValidator, Field

from traderai.adapters.signal_store import SignalStore
from traderai.contracts import ClosedReason, Signal, SignalStatus, iso_utc
from traderai.services import api, wiring

CACHE_SECONDS = 60.0
CACHE_ENTRIES = 64
DEFAULT_WINDOW = timedelta(days=30)
MAX_WINDOW = timedelta(days=366)
MAX_SIGNALS = 20_000  # reads per computation; beyond it the report says `truncated`
PARAMETERS = frozenset({"since", "until"})
CLOSED = (SignalStatus.TP3_HIT, SignalStatus.STOPPED, SignalStatus.EXPIRED)


class Stats(BaseModel):
    """Counts and outcome rates of a set of signals; rates and averages are over closed signals (null: none)."""

    signals: int
    open: int = Field(description="ACTIVE, TP1_HIT or TP2_HIT: still in play")
    closed: int = Field(description="TP3_HIT, STOPPED or EXPIRED")
    unpriced: int = Field(description="closed without market data to price the rest (exit_price null): "
                                      "left out of win_rate and the profit figures")
    by_status: dict[str, int]
    tp1_hit_rate: float | None = Field(description="closed signals that reached TP1 / closed")
    tp2_hit_rate: float | None
    tp3_hit_rate: float | None
    stop_rate: float | None
    expiry_rate: float | None
    win_rate: float | None = Field(description="closed signals with realised net profit > 0 / closed "
                                                "(unpriced ones excluded)")
    avg_realised_net_pct: float | None = Field(description="mean realised net profit % (costs included) "
                                                           "over closed signals, unpriced ones excluded")
    total_realised_net_pct: float = Field(description="sum of realised net profit % over closed signals, "
                                                      "unpriced ones excluded")
    avg_time_in_trade_hours: float | None


class PerformanceReport(BaseModel):
    """The track record of the signals created in [since, until]."""

    since: str
    until: str
    computed_at: str
    truncated: bool = Field(description=f"true if the window held more than {MAX_SIGNALS} signals")
    overall: Stats
    by_symbol: dict[str, Stats]


def stats_of(signals: Iterable[Signal]) -> Stats:
    """Pure: the Stats of these signals."""
    signals = list(signals)
    by_status = {status.value: 0 for status in SignalStatus}
    for signal in signals:
        by_status[signal.status] = by_status.get(signal.status, 0) + 1
    closed = [s for s in signals if s.status in CLOSED]

    priced = [s for s in closed if s.closed_reason != ClosedReason.NO_MARKET_DATA]

    def rate(predicate: Callable[[Signal], bool], among: list[Signal] = closed) -> float | None:
        return round(sum(1 for s in among if predicate(s)) / len(among), 6) if among else None

    profits = [s.realised_net_pct for s in priced if s.realised_net_pct is not None]
    hours = [s.time_in_trade_seconds / 3600 for s in closed if s.time_in_trade_seconds is not None]
    return Stats(
        signals=len(signals), open=len(signals) - len(closed), closed=len(closed),
        unpriced=len(closed) - len(priced), by_status=by_status,
        tp1_hit_rate=rate(lambda s: s.tp1_hit_at is not None),
        tp2_hit_rate=rate(lambda s: s.tp2_hit_at is not None),
        tp3_hit_rate=rate(lambda s: s.tp3_hit_at is not None),
        stop_rate=rate(lambda s: s.status == SignalStatus.STOPPED),
        expiry_rate=rate(lambda s: s.status == SignalStatus.EXPIRED),
        win_rate=rate(lambda s: (s.realised_net_pct or 0.0) > 0, priced),
        avg_realised_net_pct=round(sum(profits) / len(profits), 6) if profits else None,
        total_realised_net_pct=round(sum(profits), 6),
        avg_time_in_trade_hours=round(sum(hours) / len(hours), 4) if hours else None,
    )


def performance_report(signals: list[Signal], since: str, until: str, computed_at: datetime,
                       truncated: bool = False) -> PerformanceReport:
    """Pure: overall and per-symbol Stats of the signals of a window."""
    symbols = sorted({s.symbol for s in signals})
    return PerformanceReport(
        since=since, until=until, computed_at=iso_utc(computed_at), truncated=truncated,
        overall=stats_of(signals),
        by_symbol={symbol: stats_of(s for s in signals if s.symbol == symbol) for symbol in symbols})


def window_of(since: datetime | None, until: datetime | None, now: datetime) -> tuple[str, str]:
    """[since, until] as stored-precision ISO strings: default the last 30 days, at most 366 days."""
    until = until or now
    try:
        since = since or until - DEFAULT_WINDOW
    except OverflowError:  # e.g. until=0001-01-01T00:00:00Z (found by the API fuzzer)
        raise api.BadRequest(f"until: {until.isoformat()} is too early for a default window") from None
    if since > until:
        raise api.BadRequest(f"since: {iso_utc(since)} is after until: {iso_utc(until)}")
    if until - since > MAX_WINDOW:
        raise api.BadRequest(f"since/until: the window is longer than {MAX_WINDOW.days} days")
    filters = api.signal_filters(since=since, until=until)
    return filters.since or iso_utc(since), filters.until or iso_utc(until)


class PerformanceCache:
    """Reports per asked window, kept `ttl` seconds in this warm container (bounded, thread-safe)."""

    def __init__(self, ttl: float = CACHE_SECONDS, entries: int = CACHE_ENTRIES,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._ttl, self._entries, self._clock = ttl, entries, clock
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
            self._reports[key] = (now + self._ttl, report)
            self._reports.move_to_end(key)
            while len(self._reports) > self._entries:
                self._reports.popitem(last=False)
        return report

    def clear(self) -> None:
        with self._lock:
            self._reports.clear()


CACHE = PerformanceCache()


def performance(store: SignalStore, since: datetime | None, until: datetime | None, now: datetime,
                cache: PerformanceCache = CACHE) -> PerformanceReport:
    """The report of the window, from the cache when a fresh one exists (key: the window as asked)."""
    window = window_of(since, until, now)
    # The bounds as stored-precision text (since rounds up): an absent bound stays None, so "the last 30
    # days" is one entry rather than one per second of `now`.
    key = (window[0] if since else None, window[1] if until else None)

    def compute() -> PerformanceReport:
        signals = store.created_between(*window, limit=MAX_SIGNALS + 1)
        return performance_report(signals[:MAX_SIGNALS], *window, computed_at=now,
                                  truncated=len(signals) > MAX_SIGNALS)

    return cache.get(key, compute)


# ---------------------------------------------------------------- HTTP route (included by ApiFunction)

router = Router()
_plus = BeforeValidator(lambda v: v.replace(" ", "+") if isinstance(v, str) else v)  # an unescaped '+'


@router.get("/performance", summary="Track record: hit rates, realised profit, counts by status",
            responses={400: {"description": "Invalid parameter",
                             "content": {"application/json": {"model": api.ErrorBody}}}})
def get_performance(
    since: Annotated[AwareDatetime | None, _plus, Query(description="created_at >= since (default: until - 30d)")
                     ] = None,
    until: Annotated[AwareDatetime | None, _plus, Query(description="created_at <= until (default: now)")] = None,
) -> PerformanceReport:
    api.reject_unknown_parameters(router.current_event.query_string_parameters, PARAMETERS)
    return performance(wiring.signal_store(), since, until, datetime.now(UTC))
