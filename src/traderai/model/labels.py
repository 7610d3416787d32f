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

The outcome model (issue 12) is trained on ``outcome_labels``: for one side, which of the five
outcomes of the whole traded bracket (SL 1, TP 2 / 3.5 / 6 ATR, 96 candles) happens first, exactly
as the live tracker (`core.outcome.advance`) would play it, and where each tranche left at expiry.
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


# --- First-touch outcome labels of the bracket that is traded (issue 12) ---------------------------

OUTCOMES = ("stop", "tp1_stop", "tp2_stop", "tp3", "expiry")
"""The five mutually exclusive outcomes of a signal's bracket within its life, in class-index order:
the stop before TP1; TP1 then the stop; TP2 then the stop; TP3 (all targets); the life ended open."""
UNLABELLED = -1
OUTCOME_SL_ATR = 1.0  # the default Strategy's bracket (settings.Strategy)
OUTCOME_TP_ATR = (2.0, 3.5, 6.0)
OUTCOME_LIFE_CANDLES = 96  # SIGNAL_TTL_HOURS 24 at 15m


class OutcomeLabels:
    """One side's first-touch outcome of every candle t's bracket (entry close[t], ATR[t]).

    - ``outcome[t]``: index into OUTCOMES, or UNLABELLED (-1) where the outcome is not known from the
      data: fewer than `life` candles after t, an unknown or non-positive ATR, or (when times are given)
      a hole in the candle times inside the life (the tracker counts time, the labels count candles).
    - ``targets_hit[t]``: TPs filled strictly before the stop's candle (0..3).
    - ``exit_atr[t, k]``: where tranche k left, in ATR units in the trade's favour: TP_k's multiplier if
      it filled, -sl if the stop closed it, else the last close's excursion at expiry
      ``(close[t + life] - close[t]) * direction / ATR[t]``; NaN where unlabelled.
    """

    __slots__ = ("exit_atr", "long", "outcome", "targets_hit")

    def __init__(self, outcome: np.ndarray, targets_hit: np.ndarray, exit_atr: np.ndarray, long: bool) -> None:
        self.outcome, self.targets_hit, self.exit_atr, self.long = outcome, targets_hit, exit_atr, long

    @property
    def labelled(self) -> np.ndarray:
        return self.outcome != UNLABELLED


def outcome_labels(high: np.ndarray, low: np.ndarray, close: np.ndarray, atr: np.ndarray, *, long: bool,
                   sl_atr: float = OUTCOME_SL_ATR, tp_atr: tuple[float, float, float] = OUTCOME_TP_ATR,
                   life: int = OUTCOME_LIFE_CANDLES, open_time_ms: np.ndarray | None = None,
                   step_ms: int | None = None) -> OutcomeLabels:
    """First-touch labels of one side's bracket, exactly the tracker's rule (`core.outcome.advance`).

    From entry ``close[t]``, candles t+1 .. t+life are played in order: the stop (``-sl_atr × ATR[t]``
    against the trade) closes what is left; TP_k (``+tp_atr[k] × ATR[t]``) closes its tranche; several
    TPs may fill in one candle; a candle reaching the stop and a not-yet-filled TP counts as the stop
    (OHLC cannot tell the order), so a TP counts only if first touched strictly before the stop's
    candle. Reads only candles t+1 .. t+life and ATR[t] (known at t's close). Vectorised with numpy.
    """
    high, low, close, atr = (np.asarray(a, dtype=np.float64) for a in (high, low, close, atr))
    if not (len(tp_atr) == 3 and list(tp_atr) == sorted(tp_atr) and min(tp_atr) > 0 and sl_atr > 0 and life >= 1):
        raise ValueError("need 0 < tp1 <= tp2 <= tp3, sl > 0 and life >= 1")
    n = close.shape[0]
    rows = np.arange(n)
    direction = 1.0 if long else -1.0
    favourable, adverse = (high, low) if long else (low, high)
    with np.errstate(invalid="ignore"):
        tp_hit = np.vstack([first_touch(favourable, rows, close + direction * m * atr, life, above=long)
                            for m in tp_atr])
        sl_hit = first_touch(adverse, rows, close - direction * sl_atr * atr, life, above=not long)
    reached = (tp_hit <= life) & (tp_hit < sl_hit[None, :])
    targets_hit = reached.sum(axis=0)
    stopped = (targets_hit < 3) & (sl_hit <= life)
    outcome = np.where(targets_hit == 3, 3, np.where(stopped, targets_hit, 4)).astype(np.int64)

    ok = np.isfinite(atr) & (atr > 0) & np.isfinite(close) & (rows + life <= n - 1)
    if open_time_ms is not None:
        if step_ms is None:
            raise ValueError("step_ms is needed with open_time_ms")
        times = np.asarray(open_time_ms, dtype=np.int64)
        end = np.minimum(rows + life, n - 1)
        ok &= times[end] - times == life * step_ms
    outcome[~ok] = UNLABELLED

    last = close[np.minimum(rows + life, n - 1)]
    with np.errstate(invalid="ignore", divide="ignore"):
        excursion = np.where(stopped, -sl_atr, (last - close) * direction / atr)
    exit_atr = np.where(reached, np.asarray(tp_atr, dtype=np.float64)[:, None], excursion[None, :]).T.copy()
    exit_atr[~ok] = np.nan
    return OutcomeLabels(outcome, np.where(ok, targets_hit, 0), exit_atr, long)


def expiry_exit_atr(labels: OutcomeLabels, rows: np.ndarray | None = None) -> list[float]:
    """[e1, e2, e3]: the mean over `rows` (default all) whose outcome is `expiry` of each tranche's exit
    distance in ATR units (CONTRACT-12 `expiry_exit_atr`); zeros when there is no such row."""
    chosen = labels.outcome == OUTCOMES.index("expiry")
    if rows is not None:
        mask = np.zeros_like(chosen)
        mask[rows] = True
        chosen &= mask
    if not chosen.any():
        return [0.0, 0.0, 0.0]
    return [float(v) for v in labels.exit_atr[chosen].mean(axis=0)]
