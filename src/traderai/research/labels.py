"""Labels that look only into the future of a candle, and the barrier arithmetic they share with the backtest.

Two labelings are compared in the walk-forward evaluation:

- ``direction``: 1 if ``close[t + h] > close[t]`` (h = 4 candles), the original label.
- ``triple_barrier``: aligned with the signal rules. From entry ``close[t]`` with ``ATR[t]``, the
  LONG setup wins if its TP1 (``+tp × ATR``) is touched before its SL (``-sl × ATR``) within N
  candles; the SHORT setup wins if its TP1 (``-tp × ATR``) is touched before its SL (``+sl × ATR``).
  The two wins are mutually exclusive (a LONG win passes +sl×ATR before -sl×ATR, which stops the
  SHORT out). Label 1 = LONG wins, 0 = SHORT wins, NaN = neither (both stopped out or timed out),
  so the probability means ``P(LONG's TP1 first | one side's TP1 is hit before its SL)``, and
  ``decide()``'s ``side = LONG if p >= 0.5`` picks the side more likely to win.

A candle that touches both a take-profit and the stop of the same setup counts as the stop
first (the conservative assumption the backtest uses too).
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

LABELINGS = ("direction", "triple_barrier")
DIRECTION_HORIZON = 4
BARRIER_CANDLES = 96  # 24 h of 15m candles = Strategy.signal_ttl_hours
BARRIER_TP_ATR = 2.0  # TP1 of the default Strategy
BARRIER_SL_ATR = 1.0  # SL of the default Strategy
_CHUNK_ROWS = 8192


def never(horizon: int) -> int:
    """The offset `first_touch` returns when the level is not touched within `horizon` candles."""
    return horizon + 1


def first_touch(series: np.ndarray, rows: np.ndarray, levels: np.ndarray, horizon: int, *,
                above: bool) -> np.ndarray:
    """For each row t, the offset k in 1..horizon of the first candle t+k with series >= level (above)
    or <= level (below); `horizon + 1` if none. Candles past the end of `series` never touch.

    Vectorised over rows in chunks (a chunk is a (rows, horizon) window copy of a few MB).
    """
    series = np.asarray(series, dtype=np.float64)
    rows = np.asarray(rows, dtype=np.int64)
    levels = np.asarray(levels, dtype=np.float64)
    out = np.full(rows.shape[0], never(horizon), dtype=np.int64)
    if rows.shape[0] == 0:
        return out
    # windows[t] = series[t+1 .. t+horizon]; NaN padding past the end compares False.
    padded = np.concatenate([series[1:], np.full(horizon, np.nan)])
    windows = sliding_window_view(padded, horizon)
    for start in range(0, rows.shape[0], _CHUNK_ROWS):
        chunk = slice(start, start + _CHUNK_ROWS)
        window = windows[rows[chunk]]
        level = levels[chunk, None]
        with np.errstate(invalid="ignore"):
            hit = window >= level if above else window <= level
        first = hit.argmax(axis=1) + 1
        out[chunk] = np.where(hit.any(axis=1), first, never(horizon))
    return out


def direction_labels(close: np.ndarray, horizon: int = DIRECTION_HORIZON) -> np.ndarray:
    """1.0 where close[t + horizon] > close[t], else 0.0; NaN for the last `horizon` rows."""
    close = np.asarray(close, dtype=np.float64)
    labels = np.full(close.shape[0], np.nan)
    if close.shape[0] > horizon:
        labels[:-horizon] = (close[horizon:] > close[:-horizon]).astype(np.float64)
    return labels


def triple_barrier_labels(high: np.ndarray, low: np.ndarray, close: np.ndarray, atr: np.ndarray, *,
                          tp_atr: float = BARRIER_TP_ATR, sl_atr: float = BARRIER_SL_ATR,
                          horizon: int = BARRIER_CANDLES) -> np.ndarray:
    """1.0 if the LONG setup's TP1 comes first, 0.0 if the SHORT's does, NaN if neither (module doc).

    Rows whose `horizon` following candles are not all in the data, or whose ATR is unknown, are NaN.
    """
    high, low, close, atr = (np.asarray(a, dtype=np.float64) for a in (high, low, close, atr))
    n = close.shape[0]
    rows = np.arange(n)
    long_tp = first_touch(high, rows, close + tp_atr * atr, horizon, above=True)
    long_sl = first_touch(low, rows, close - sl_atr * atr, horizon, above=False)
    short_tp = first_touch(low, rows, close - tp_atr * atr, horizon, above=False)
    short_sl = first_touch(high, rows, close + sl_atr * atr, horizon, above=True)
    labels = np.full(n, np.nan)
    labels[(long_tp <= horizon) & (long_tp < long_sl)] = 1.0
    labels[(short_tp <= horizon) & (short_tp < short_sl)] = 0.0
    labels[~np.isfinite(atr) | (atr <= 0)] = np.nan
    labels[max(0, n - horizon):] = np.nan
    return labels


def label_horizon(labeling: str) -> int:
    """How many candles ahead a labeling looks (the minimum purge between train and test)."""
    if labeling == "direction":
        return DIRECTION_HORIZON
    if labeling == "triple_barrier":
        return BARRIER_CANDLES
    raise ValueError(f"labeling must be one of {LABELINGS}, got {labeling!r}")


def make_labels_for(labeling: str, high: np.ndarray, low: np.ndarray, close: np.ndarray,
                    atr: np.ndarray) -> np.ndarray:
    """The labels of one labeling with its default parameters."""
    if labeling == "direction":
        return direction_labels(close)
    if labeling == "triple_barrier":
        return triple_barrier_labels(high, low, close, atr)
    raise ValueError(f"labeling must be one of {LABELINGS}, got {labeling!r}")
