"""Cost-aware backtest of the signal rules on out-of-sample probabilities, vectorised with numpy.

For every candle of a market, the walk-forward's out-of-sample probability (never an in-sample one)
goes through the same filters as `traderai.core.signals.decide` with the given Strategy
(`accept_mask` mirrors them; a unit test pins it to `decide` row by row). Each accepted candidate is
then played out over the candles that follow with the outcome rule of `traderai.core.outcome`
(the live tracker's rule):

- entry at the signal candle's close; the signal exists from that candle's close, and only candles
  wholly inside its life (`signal_ttl_hours`, 96 candles of 15m) count;
- TP1/TP2/TP3 close `tp_weights` of the position at the TP price (several may fill in one candle);
  the stop closes the rest at the stop price and is never moved (no breakeven);
- a candle that reaches the stop and a not-yet-hit TP counts as the stop first (OHLC cannot tell);
- at expiry the rest leaves at the close of the last candle inside the life;
- costs (`Strategy.costs_pct`: two taker fees, two slippages, the funding estimate) are always paid:
  net % = Σ w_k · gross_k % − costs %, in % of notional (x leverage for % of margin).

Like the duplicate filter, a new signal for a symbol and side is refused while the previous one is
still open (until its last part has exited or it expired). Candidates too close to the end of the
data to be played out in full are left out.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from traderai.contracts import TIMEFRAME_SECONDS, Side, Strategy
from traderai.core.signals import liquidation_distance_pct
from traderai.model.labels import first_touch
from traderai.research.stats import block_length_ms, block_mean
from traderai.research.walkforward import MarketFrame

CONFIDENCE_BUCKETS = (0.55, 0.60, 0.65, 0.70, 1.0000001)


def life_candles(strategy: Strategy, timeframe: str) -> int:
    """Candles wholly inside a signal's life: opened at or after its creation, closed by its expiry."""
    return int(strategy.signal_ttl_hours * 3600 // TIMEFRAME_SECONDS[timeframe])


def accept_mask(probability: np.ndarray, price: np.ndarray, atr: np.ndarray, quote_volume_24h: np.ndarray,
                strategy: Strategy, drift_score: np.ndarray | None = None) -> np.ndarray:
    """Rows `decide` would accept, every filter but the duplicate one (that one is sequential).

    The arithmetic repeats `compute_levels` operation by operation, so results agree to the bit.
    A missing (NaN) 24h volume fails the liquidity filter, as a missing one does in `decide`.
    """
    p, price, atr = (np.asarray(a, dtype=np.float64) for a in (probability, price, atr))
    with np.errstate(invalid="ignore", divide="ignore"):
        valid = np.isfinite(p) & np.isfinite(atr) & np.isfinite(price) & (p >= 0) & (p <= 1) & (atr > 0) & (price > 0)
        direction = np.where(p >= 0.5, 1.0, -1.0)
        confidence = np.maximum(p, 1.0 - p)
        gross = np.zeros_like(p)
        for weight, multiplier in zip(strategy.tp_weights, strategy.tp_atr_multipliers, strict=True):
            take_profit = price + direction * multiplier * atr
            gross = gross + weight * (np.abs(take_profit - price) / price * 100.0)
        stop = price - direction * strategy.sl_atr_multiplier * atr
        sl_pct = np.abs(stop - price) / price * 100.0
        liquidation = {side: liquidation_distance_pct(strategy.leverage, strategy.maintenance_margin_pct, side)
                       for side in Side}
        accepted = (valid & (confidence >= strategy.min_confidence)
                    & (gross - strategy.costs_pct >= strategy.min_net_profit_pct)
                    & (np.asarray(quote_volume_24h, dtype=np.float64) >= strategy.min_quote_volume_usd)
                    & (sl_pct < np.where(direction > 0, liquidation[Side.LONG], liquidation[Side.SHORT])))
        if strategy.max_drift_psi > 0 and drift_score is not None:
            accepted &= ~(np.nan_to_num(np.asarray(drift_score, dtype=np.float64)) > strategy.max_drift_psi)
    return accepted


@dataclass(frozen=True, slots=True)
class Outcomes:
    """The played-out trades of one batch of signals (one entry per signal)."""

    targets_hit: np.ndarray  # 0..3
    stopped: np.ndarray  # bool: the rest left at the stop
    expired: np.ndarray  # bool: the rest left at the last close inside the life
    exit_offset: np.ndarray  # candles after the signal candle when the last part left
    gross_pct: np.ndarray
    net_pct: np.ndarray
    expected_net_pct: np.ndarray  # the rule's own figure: every TP reached, minus costs


def play_out(high: np.ndarray, low: np.ndarray, close: np.ndarray, rows: np.ndarray, long: np.ndarray,
             atr: np.ndarray, strategy: Strategy, horizon: int) -> Outcomes:
    """Play every signal (entry close[row], side, ATR at row) over candles row+1 .. row+horizon."""
    high, low, close = (np.asarray(a, dtype=np.float64) for a in (high, low, close))
    rows = np.asarray(rows, dtype=np.int64)
    long = np.asarray(long, dtype=bool)
    n = rows.shape[0]
    entry = close[rows]
    direction = np.where(long, 1.0, -1.0)
    take_profits = [entry + direction * m * atr for m in strategy.tp_atr_multipliers]
    stop = entry - direction * strategy.sl_atr_multiplier * atr
    tp_hit = np.empty((3, n), dtype=np.int64)
    sl_hit = np.empty(n, dtype=np.int64)
    for side_rows, is_long in ((np.flatnonzero(long), True), (np.flatnonzero(~long), False)):
        favourable, adverse = (high, low) if is_long else (low, high)
        for k in range(3):
            tp_hit[k, side_rows] = first_touch(favourable, rows[side_rows], take_profits[k][side_rows], horizon,
                                               above=is_long)
        sl_hit[side_rows] = first_touch(adverse, rows[side_rows], stop[side_rows], horizon, above=not is_long)
    # A TP counts only if reached strictly before the stop's candle (same candle: the stop first).
    reached = (tp_hit <= horizon) & (tp_hit < sl_hit[None, :])
    targets_hit = reached.sum(axis=0)
    stopped = (targets_hit < 3) & (sl_hit <= horizon)
    expired = (targets_hit < 3) & ~stopped
    last_index = np.minimum(rows + horizon, close.shape[0] - 1)
    rest_price = np.where(stopped, stop, close[last_index])
    weights = np.asarray(strategy.tp_weights)[:, None]
    move = [direction * (tp - entry) / entry * 100.0 for tp in take_profits]
    gross = (np.where(reached, weights * np.vstack(move), 0.0)).sum(axis=0)
    rest_weight = 1.0 - np.where(reached, weights, 0.0).sum(axis=0)
    gross = gross + np.where(targets_hit < 3, rest_weight * direction * (rest_price - entry) / entry * 100.0, 0.0)
    exit_offset = np.where(targets_hit == 3, tp_hit[2], np.where(stopped, sl_hit, horizon))
    expected_gross = sum(w * np.abs(tp - entry) / entry * 100.0
                         for w, tp in zip(strategy.tp_weights, take_profits, strict=True))
    return Outcomes(targets_hit=targets_hit, stopped=stopped, expired=expired, exit_offset=exit_offset,
                    gross_pct=gross, net_pct=gross - strategy.costs_pct,
                    expected_net_pct=np.asarray(expected_gross) - strategy.costs_pct)


def without_overlaps(rows: np.ndarray, long: np.ndarray, exit_offset: np.ndarray) -> np.ndarray:
    """Keep-mask over time-ordered candidates: one open signal per side at a time (the duplicate filter).

    A candidate at candle r is refused while an earlier kept signal of its side is open, i.e. while
    r < its row + exit offset (the candle in which it closed; its close is the earliest new decision).
    """
    keep = np.zeros(rows.shape[0], dtype=bool)
    open_until = {True: -1, False: -1}
    for i, (row, is_long, offset) in enumerate(zip(rows.tolist(), long.tolist(), exit_offset.tolist(),
                                                   strict=True)):
        if row >= open_until[is_long]:
            keep[i] = True
            open_until[is_long] = row + offset
    return keep


@dataclass
class Trades:
    """Every simulated signal of a backtest, one entry per signal (columns as numpy arrays)."""

    symbol: np.ndarray
    open_time_ms: np.ndarray  # the signal candle's open time (the signal exists from its close)
    long: np.ndarray
    probability: np.ndarray
    confidence: np.ndarray
    entry: np.ndarray
    atr: np.ndarray
    outcomes: Outcomes

    def __len__(self) -> int:
        return int(self.symbol.shape[0])


def backtest_market(frame: MarketFrame, probability: np.ndarray, strategy: Strategy,
                    drift_score: np.ndarray | None = None) -> tuple[Trades, dict[str, int]]:
    """Trades of one market; `probability` has one entry per candle (NaN where no OOS prediction)."""
    candles = frame.candles
    horizon = life_candles(strategy, candles.timeframe)
    n = len(candles)
    probability = np.asarray(probability, dtype=np.float64)
    accepted = accept_mask(probability, candles.close, frame.atr, frame.quote_volume_24h, strategy, drift_score)
    complete = np.arange(n) + horizon <= n - 1
    rows = np.flatnonzero(accepted & complete)
    long = probability[rows] >= 0.5
    outcomes = play_out(candles.high, candles.low, candles.close, rows, long, frame.atr[rows], strategy, horizon)
    keep = without_overlaps(rows, long, outcomes.exit_offset)
    kept = rows[keep]
    counts = {"predicted": int(np.isfinite(probability).sum()), "accepted_by_rules": int(accepted.sum()),
              "candidates_complete": int(rows.shape[0]), "signals": int(keep.sum()),
              "refused_as_duplicate": int((~keep).sum()), "cut_by_end_of_data": int((accepted & ~complete).sum())}
    selected = Outcomes(*(np.asarray(getattr(outcomes, f))[keep] for f in Outcomes.__dataclass_fields__))
    p = probability[kept]
    return Trades(symbol=np.full(kept.shape[0], candles.symbol, dtype=object), open_time_ms=candles.open_time_ms[kept],
                  long=long[keep], probability=p, confidence=np.maximum(p, 1.0 - p), entry=candles.close[kept],
                  atr=frame.atr[kept], outcomes=selected), counts


def concat(parts: Sequence[Trades]) -> Trades:
    """All markets' trades in one table, ordered by signal time."""
    def cat(name: str) -> np.ndarray:
        return np.concatenate([getattr(p, name) for p in parts]) if parts else np.empty(0)

    outcomes = Outcomes(*(np.concatenate([getattr(p.outcomes, f) for p in parts]) if parts else np.empty(0)
                          for f in Outcomes.__dataclass_fields__))
    trades = Trades(symbol=cat("symbol"), open_time_ms=cat("open_time_ms"), long=cat("long"),
                    probability=cat("probability"), confidence=cat("confidence"), entry=cat("entry"),
                    atr=cat("atr"), outcomes=outcomes)
    order = np.argsort(trades.open_time_ms, kind="stable")
    return Trades(symbol=trades.symbol[order], open_time_ms=trades.open_time_ms[order], long=trades.long[order],
                  probability=trades.probability[order], confidence=trades.confidence[order],
                  entry=trades.entry[order], atr=trades.atr[order],
                  outcomes=Outcomes(*(np.asarray(getattr(outcomes, f))[order] for f in Outcomes.__dataclass_fields__)))


def summarize(trades: Trades, mask: np.ndarray | None, strategy: Strategy) -> dict[str, Any]:
    """Hit rates, expectancy net of costs (with its standard error), expected vs realised, in one group."""
    chosen = np.ones(len(trades), dtype=bool) if mask is None else mask
    o = trades.outcomes
    n = int(chosen.sum())
    if n == 0:
        return {"signals": 0}
    net = o.net_pct[chosen]
    std = float(net.std(ddof=1)) if n > 1 else float("nan")
    naive = std / math.sqrt(n) if n > 1 else float("nan")
    # Signals of different markets and sides are open at once and move together: the s.e. treats
    # calendar blocks of >= 2 lives as the independent units (research/stats.py), never smaller than naive.
    blocks = block_mean(net, trades.open_time_ms[chosen], block_length_ms(int(strategy.signal_ttl_hours * 3_600_000)))
    stderr = max(naive, blocks.se) if math.isfinite(blocks.se) else naive
    return {
        "signals": n, "long": int(trades.long[chosen].sum()), "short": int((~trades.long[chosen]).sum()),
        "tp1_rate": float((o.targets_hit[chosen] >= 1).mean()), "tp2_rate": float((o.targets_hit[chosen] >= 2).mean()),
        "tp3_rate": float((o.targets_hit[chosen] >= 3).mean()), "stop_rate": float(o.stopped[chosen].mean()),
        "expiry_rate": float(o.expired[chosen].mean()), "win_rate": float((net > 0).mean()),
        "mean_confidence": float(trades.confidence[chosen].mean()),
        "expected_net_pct": float(o.expected_net_pct[chosen].mean()),
        "realised_gross_pct": float(o.gross_pct[chosen].mean()),
        "expectancy_net_pct": float(net.mean()), "median_net_pct": float(np.median(net)),
        "std_net_pct": std, "stderr_net_pct": stderr, "naive_stderr_net_pct": naive, "blocks": blocks.blocks,
        "t_stat": float(net.mean() / stderr) if n > 1 and stderr > 0 else float("nan"),
        "total_net_usd": float(net.sum() / 100.0 * strategy.position_size_usd),
        "expectancy_margin_pct": float(net.mean() * strategy.leverage),
    }


def confidence_bucket_labels() -> list[str]:
    """Names of the confidence buckets, e.g. "0.55-0.60" and "0.70+"."""
    edges = CONFIDENCE_BUCKETS
    return [f"{lo:.2f}-{hi:.2f}" if hi <= 1 else f"{lo:.2f}+" for lo, hi in itertools.pairwise(edges)]


def report_tables(trades: Trades, strategy: Strategy) -> dict[str, Any]:
    """Summaries overall, by symbol, by side and by confidence bucket."""
    tables: dict[str, Any] = {"overall": summarize(trades, None, strategy), "by_symbol": {}, "by_side": {},
                              "by_confidence": {}}
    for symbol in sorted(set(trades.symbol.tolist())):
        tables["by_symbol"][symbol] = summarize(trades, trades.symbol == symbol, strategy)
    for name, mask in (("LONG", trades.long), ("SHORT", ~trades.long)):
        tables["by_side"][name] = summarize(trades, np.asarray(mask, dtype=bool), strategy)
    edges = CONFIDENCE_BUCKETS
    for label, (lo, hi) in zip(confidence_bucket_labels(), itertools.pairwise(edges), strict=True):
        tables["by_confidence"][label] = summarize(trades, (trades.confidence >= lo) & (trades.confidence < hi),
                                                   strategy)
    return tables

