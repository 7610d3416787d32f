"""Candidate features beyond the single-market 18, and higher timeframes resampled from 15m candles.

Research only: nothing here is served. Every column at row t reads candles whose open time is <= t's
(a unit test changes the candles after t and checks that row t does not move), so the columns could
be computed in the predict path from what it fetches, with one extra input for the market factor:
BTC's candles of the same tick.

- ``market factor``: BTC's own 4- and 24-candle log returns and 24-candle realised volatility,
  looked up by open time (a row whose open time BTC lacks gets NaN and is dropped, as warm-up rows are).
- ``higher-timeframe aggregates`` of the same candles: the 96-candle log return (one day at 15m),
  ATR(14) over the mean true range of the last 96 candles (is volatility expanding?), and where the
  close sits in the 96-candle high-low range.
- ``calendar``: hour of day and day of week of the candle's open, as sine/cosine pairs (UTC).
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from traderai.contracts import TIMEFRAME_SECONDS, Candles
from traderai.core.features import FEATURE_NAMES, atr, compute_features

MARKET_FACTOR_SYMBOL = "BTC/USDT"
HTF_WINDOW = 96
FACTOR_NAMES = ("btc_logret_4", "btc_logret_24", "btc_rvol_24")
HTF_NAMES = ("logret_96", "atr_ratio_96", "range_pos_96")
CALENDAR_NAMES = ("hour_sin", "hour_cos", "dow_sin", "dow_cos")
EXTENDED_NAMES: tuple[str, ...] = (*FEATURE_NAMES, *FACTOR_NAMES, *HTF_NAMES, *CALENDAR_NAMES)
FEATURE_SETS = ("base", "extended")


def _log_return(close: np.ndarray, lag: int) -> np.ndarray:
    out = np.full(close.shape[0], np.nan)
    if close.shape[0] > lag:
        out[lag:] = np.log(close[lag:] / close[:-lag])
    return out


def _rolling(values: np.ndarray, window: int, reduce: str) -> np.ndarray:
    """Trailing-window reduction (window ending at t, t included); NaN before the window fills."""
    out = np.full(values.shape[0], np.nan)
    if values.shape[0] >= window:
        view = sliding_window_view(values, window)
        out[window - 1:] = getattr(view, reduce)(axis=1)
    return out


def factor_columns(btc: Candles) -> np.ndarray:
    """(n_btc, 3) BTC's 4- and 24-candle log returns and 24-candle realised volatility."""
    close = np.asarray(btc.close, dtype=np.float64)
    one = _log_return(close, 1)
    rvol = np.sqrt(_rolling(np.nan_to_num(one, nan=0.0) ** 2, 24, "mean"))
    rvol[:24] = np.nan
    return np.column_stack([_log_return(close, 4), _log_return(close, 24), rvol])


def htf_columns(candles: Candles, window: int = HTF_WINDOW) -> np.ndarray:
    """(n, 3) window log return, ATR(14) / mean true range of the window, close's place in the window's range."""
    high, low, close = (np.asarray(a, dtype=np.float64) for a in (candles.high, candles.low, candles.close))
    previous = np.concatenate([[np.nan], close[:-1]])
    true_range = np.fmax(high - low, np.fmax(np.abs(high - previous), np.abs(low - previous)))
    mean_tr = _rolling(true_range, window, "mean")
    highest, lowest = _rolling(high, window, "max"), _rolling(low, window, "min")
    with np.errstate(invalid="ignore", divide="ignore"):
        atr_ratio = atr(high, low, close) / mean_tr
        span = highest - lowest
        position = np.where(span > 0, (close - lowest) / span, 0.5)
    position[~np.isfinite(span)] = np.nan
    atr_ratio[~np.isfinite(mean_tr) | (mean_tr <= 0)] = np.nan
    return np.column_stack([_log_return(close, window), atr_ratio, position])


def calendar_columns(open_time_ms: np.ndarray) -> np.ndarray:
    """(n, 4) hour of day and day of week (UTC, of the candle's open) on the unit circle."""
    seconds = np.asarray(open_time_ms, dtype=np.int64) // 1000
    hour = (seconds % 86400) / 3600.0
    day = ((seconds // 86400) + 3) % 7  # 1970-01-01 was a Thursday: Monday = 0
    return np.column_stack([np.sin(2 * np.pi * hour / 24), np.cos(2 * np.pi * hour / 24),
                            np.sin(2 * np.pi * day / 7), np.cos(2 * np.pi * day / 7)])


def align(values: np.ndarray, times: np.ndarray, at: np.ndarray) -> np.ndarray:
    """Rows of `values` (indexed by `times`, ascending) at the open times `at`; NaN where absent."""
    out = np.full((at.shape[0], values.shape[1]), np.nan)
    position = np.searchsorted(times, at)
    inside = position < times.shape[0]
    found = inside.copy()
    found[inside] = times[position[inside]] == at[inside]
    out[found] = values[position[found]]
    return out


def extended_features(candles: Candles, factor: Candles | None) -> np.ndarray:
    """(n, len(EXTENDED_NAMES)): the 18, then BTC's factor columns, the window aggregates, the calendar.

    `factor` is BTC's candles of the same timeframe (the market itself when it is BTC). Without it
    the factor columns are NaN, so those rows drop out of training like warm-up rows.
    """
    if factor is not None and factor.timeframe != candles.timeframe:
        raise ValueError(f"factor candles are {factor.timeframe}, the market's {candles.timeframe}")
    base = compute_features(candles)
    if factor is None:
        market = np.full((len(candles), len(FACTOR_NAMES)), np.nan)
    else:
        market = align(factor_columns(factor), np.asarray(factor.open_time_ms), np.asarray(candles.open_time_ms))
    return np.column_stack([base, market, htf_columns(candles), calendar_columns(candles.open_time_ms)])


def resample(candles: Candles, timeframe: str) -> Candles:
    """Candles of a longer timeframe built from complete groups of the given ones.

    A group is every candle whose open time falls in one bucket of the new timeframe (aligned on
    the epoch, as exchanges align them); only buckets holding all their candles are kept, so a gap
    never produces a short candle. Open = first open, high = max, low = min, close = last close,
    volume = sum. The new candle closes when its last source candle closes: nothing later is read.
    """
    source = TIMEFRAME_SECONDS[candles.timeframe]
    target = TIMEFRAME_SECONDS[timeframe]
    if target % source or target < source:
        raise ValueError(f"cannot build {timeframe} candles from {candles.timeframe} ones")
    per = target // source
    if per == 1:
        return candles
    times = np.asarray(candles.open_time_ms, dtype=np.int64)
    bucket = times // (target * 1000)
    starts = np.flatnonzero(np.concatenate([[True], bucket[1:] != bucket[:-1]]))
    ends = np.concatenate([starts[1:], [times.shape[0]]])
    complete = (ends - starts) == per
    if not times.size:
        return Candles(candles.symbol, timeframe, times, *(np.empty(0) for _ in range(5)))
    # Reduce over every bucket (each one exactly its own candles), then keep the complete ones.
    high = np.maximum.reduceat(np.asarray(candles.high, dtype=np.float64), starts)[complete]
    low = np.minimum.reduceat(np.asarray(candles.low, dtype=np.float64), starts)[complete]
    volume = np.add.reduceat(np.asarray(candles.volume, dtype=np.float64), starts)[complete]
    starts, ends = starts[complete], ends[complete]
    return Candles(candles.symbol, timeframe, bucket[starts] * target * 1000, np.asarray(candles.open)[starts],
                   high, low, np.asarray(candles.close)[ends - 1], volume)
