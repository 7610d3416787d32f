"""GET /signals/{signal_id}/candles: a signal's candles, levels and hit marks, for its chart.

The candles run from `BEFORE_CANDLES` before the signal candle to `AFTER_CANDLES` past the trade's end
(its close, or its expiry while it is open), never past "now" (the functions' clock: the wall clock on
AWS, the replay clock locally, so a replayed chart never shows the replay's future). They come from the
market source the deployment reads (ccxt's `fetch_ohlcv` from the exchange, or the recorded candles of
the replay) through `CandleHistory`; a candle archive implementing that protocol can take its place.

This module imports no numpy or ccxt at import time: ApiFunction includes its route
(`traderai.routes.chart`) for the OpenAPI document only, ChartFunction (which carries the market layer)
serves it.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from pydantic import Field

from traderai.contracts import TIMEFRAME_SECONDS, Signal, SignalStatus, parse_iso_utc
from traderai.market import MarketDataError
from traderai.services import api

if TYPE_CHECKING:
    from traderai.contracts import Candles
    from traderai.ports import CandleHistory

BEFORE_CANDLES = 48
AFTER_CANDLES = 12
MAX_CANDLES = 1000  # one exchange request


class MarketDataUnavailable(api.ApiError):
    status_code = 502
    code = "market_data_unavailable"


class ChartCandle(api.ApiModel):
    """One closed candle; `time` is its OPEN time in UTC epoch seconds (as charting libraries take it)."""

    time: int
    open: float
    high: float
    low: float
    close: float


class ChartMark(api.ApiModel):
    """Something that happened to the trade, on the candle in which it happened."""

    kind: str = Field(description="entry, tp1, tp2, tp3, stop or expiry")
    at: str = Field(description="when it was known: the close time of that candle (ISO-8601 UTC)")
    candle_time: int = Field(description="open time of that candle, epoch seconds (a `time` of `candles`)")
    price: float | None = Field(description="the level it happened at (null: an expiry without market data)")


class SignalChart(api.ApiModel):
    """A signal's candles around it, its levels, what happened and (once closed) its realised result."""

    signal_id: str
    symbol: str
    side: str
    timeframe: str
    status: str
    source: str = Field(description="where the candles come from: exchange (ccxt) or replay (recorded)")
    levels: dict[str, float] = Field(description="entry, tp1, tp2, tp3, stop")
    candles: list[ChartCandle]
    marks: list[ChartMark]
    realised_net_pct: float | None = Field(description="realised net profit %, costs included (exits so far)")
    exit_price: float | None
    closed_reason: str | None


@dataclass(frozen=True, slots=True)
class ChartWindow:
    start_ms: int
    end_ms: int


def chart_window(signal: Signal, now: datetime) -> ChartWindow:
    """Pure: [start, end) of the candles to draw, in open-time ms (at most MAX_CANDLES, ending by `now`)."""
    step_ms = TIMEFRAME_SECONDS[signal.timeframe] * 1000
    signal_candle_ms = _ms(signal.candle_time)
    trade_end_ms = _ms(signal.closed_at) if signal.closed_at else _ms(signal.expires_at)
    start = signal_candle_ms - BEFORE_CANDLES * step_ms
    end = min(trade_end_ms + AFTER_CANDLES * step_ms, int(now.timestamp() * 1000))
    end = max(end, signal_candle_ms + step_ms)
    return ChartWindow(start, min(end, start + MAX_CANDLES * step_ms))


def marks_of(signal: Signal) -> list[ChartMark]:
    """Pure: entry, the targets hit, and the stop or expiry, each on the candle that showed it."""
    step = TIMEFRAME_SECONDS[signal.timeframe]
    entry_candle = _ms(signal.candle_time) // 1000
    marks = [ChartMark(kind="entry", at=signal.created_at, candle_time=entry_candle, price=signal.entry_price)]
    price: float | None
    for kind, at, price in (("tp1", signal.tp1_hit_at, signal.tp1_price), ("tp2", signal.tp2_hit_at, signal.tp2_price),
                            ("tp3", signal.tp3_hit_at, signal.tp3_price)):
        if at:
            marks.append(ChartMark(kind=kind, at=at, candle_time=_ms(at) // 1000 - step, price=price))
    if signal.closed_at and signal.status in (SignalStatus.STOPPED, SignalStatus.EXPIRED):
        kind = "stop" if signal.status == SignalStatus.STOPPED else "expiry"
        price = signal.sl_price if kind == "stop" else signal.exit_price
        candle_time = _ms(signal.closed_at) // 1000 - step
        marks.append(ChartMark(kind=kind, at=signal.closed_at, candle_time=max(candle_time, entry_candle),
                               price=price))
    return marks


def chart_of(signal: Signal, candles: Candles, source: str) -> SignalChart:
    """Pure: the chart reply of a signal and its candles."""
    rows = zip(candles.open_time_ms.tolist(), candles.open.tolist(), candles.high.tolist(), candles.low.tolist(),
               candles.close.tolist(), strict=True)
    return SignalChart(
        signal_id=signal.signal_id, symbol=signal.symbol, side=signal.side, timeframe=signal.timeframe,
        status=signal.status, source=source,
        levels={"entry": signal.entry_price, "tp1": signal.tp1_price, "tp2": signal.tp2_price,
                "tp3": signal.tp3_price, "stop": signal.sl_price},
        candles=[ChartCandle(time=int(t) // 1000, open=o, high=h, low=lo, close=c) for t, o, h, lo, c in rows],
        marks=marks_of(signal), realised_net_pct=signal.realised_net_pct, exit_price=signal.exit_price,
        closed_reason=signal.closed_reason)


def signal_chart(signal: Signal, history: CandleHistory, source: str, now: datetime,
                 loop: asyncio.AbstractEventLoop) -> SignalChart:
    """The chart of a signal; 502 (with the reason code) if its market's candles cannot be had."""
    window = chart_window(signal, now)
    try:
        candles = loop.run_until_complete(history.fetch_candles_between(
            signal.symbol, signal.timeframe, window.start_ms, window.end_ms, now))
    except MarketDataError as exc:
        raise MarketDataUnavailable(f"{signal.symbol}: candles unavailable ({exc.reason}): {exc}") from exc
    return chart_of(signal, candles, source)


def _ms(text: str) -> int:
    return int(parse_iso_utc(text).timestamp() * 1000)
