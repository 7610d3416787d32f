"""A model's out-of-sample evidence per market and side, for its manifest (CONTRACT-12 `edge_evidence`).

On the model's own unseen test stretch, every candle goes through the seed's rules with the default
Strategy (`backtest.accept_mask`, pinned to `core.signals.decide`), the duplicate filter (one open
signal per market and side; paper signals are stored signals too, so every seed signal counts), and
each signal is played out by the tracker's rule (`backtest.play_out`, pinned to `core.outcome`), costs
in. A signal is a *candidate for trading* when its expected value (the outcome model's probabilities
for its side, CONTRACT-12's payoffs, its costs) is at least the EV filter's minimum; the evidence of a
side is those signals' realised net: n, mean and standard error.

Standard error: signals of one market and side never overlap in time (the duplicate filter), so they
are a time-ordered series of separate trades; what can still link them is the market's regime (a
trending month). The standard error is the larger of the naive one and Newey-West's
(`model.outcome.newey_west_se`), never the naive one alone.

`ev_buckets`: every seed signal of the stretch (both sides, tradeable or paper), in quantile buckets of
predicted EV (>= MIN_BUCKET_SIGNALS each): mean predicted EV vs mean realised net (with its s.e.).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from traderai.contracts import Strategy, iso_utc
from traderai.model.outcome import Bracket, expected_value_pct, newey_west_se
from traderai.research.backtest import backtest_market
from traderai.research.walkforward import MarketFrame

MIN_BUCKET_SIGNALS = 30
MAX_BUCKETS = 5


def _iso(ms: int) -> str:
    from datetime import UTC, datetime

    return iso_utc(datetime.fromtimestamp(ms / 1000, tz=UTC))


def _summary(net: np.ndarray) -> dict[str, Any]:
    n = int(net.shape[0])
    return {"n": n, "mean_net_pct": float(net.mean()) if n else None,
            "se_pct": newey_west_se(net) if n >= 2 else None}


def ev_buckets(predicted: np.ndarray, realised: np.ndarray) -> list[dict[str, Any]]:
    """Quantile buckets of predicted EV, each of >= MIN_BUCKET_SIGNALS signals (at most MAX_BUCKETS)."""
    count = min(MAX_BUCKETS, predicted.shape[0] // MIN_BUCKET_SIGNALS)
    if count < 1:
        return []
    order = np.argsort(predicted, kind="stable")
    buckets = []
    for group in np.array_split(order, count):
        net = realised[group]
        buckets.append({"n": int(group.shape[0]), "predicted_ev_pct": float(predicted[group].mean()),
                        "ev_from_pct": float(predicted[group].min()), "ev_to_pct": float(predicted[group].max()),
                        "realised_net_pct": float(net.mean()),
                        "se_pct": float(net.std(ddof=1) / np.sqrt(net.shape[0])) if net.shape[0] > 1 else None})
    return buckets


def market_evidence(frame: MarketFrame, probability: np.ndarray, outcome_probability: Mapping[str, np.ndarray],
                    expiry_exit: Mapping[str, Sequence[float]], bracket: Bracket, strategy: Strategy,
                    min_expected_value_pct: float) -> dict[str, Any]:
    """Evidence of one market from per-candle direction probabilities (NaN outside the test stretch) and
    per-candle outcome probabilities of each side ((n, 5), NaN rows outside it)."""
    trades, counts = backtest_market(frame, probability, strategy)
    rows = np.searchsorted(frame.candles.open_time_ms, trades.open_time_ms)
    atr_pct = trades.atr / trades.entry * 100.0
    ev = np.full(len(trades), np.nan)
    for side, is_long in (("LONG", True), ("SHORT", False)):
        mine = trades.long == is_long
        ev[mine] = expected_value_pct(outcome_probability[side][rows[mine]], atr_pct[mine], strategy.tp_weights,
                                      bracket, expiry_exit[side], strategy.costs_pct)
    net = trades.outcomes.net_pct
    known = np.isfinite(ev)
    candidate = known & (ev >= min_expected_value_pct)
    evidence: dict[str, Any] = {}
    seed: dict[str, Any] = {}
    for side, is_long in (("LONG", True), ("SHORT", False)):
        mine = trades.long == is_long
        evidence[side] = {**_summary(net[mine & candidate]),
                          "mean_expected_value_pct": float(ev[mine & candidate].mean()) if (mine & candidate).any()
                          else None}
        seed[side] = {**_summary(net[mine & known]),
                      "mean_expected_value_pct": float(ev[mine & known].mean()) if (mine & known).any() else None}
    period = ({"from": _iso(int(trades.open_time_ms.min())), "to": _iso(int(trades.open_time_ms.max()))}
              if len(trades) else None)
    return {"edge_evidence": evidence,
            "evidence_details": {
                "rule": (f"seed rules (default Strategy) + duplicate filter + expected value >= "
                         f"{min_expected_value_pct:g} %, each signal played out by the tracker's rule, costs "
                         f"{strategy.costs_pct:g} % in; s.e. = max(naive, Newey-West)"),
                "seed_signals": seed, "signal_period": period, "counts": counts,
                "min_expected_value_pct": min_expected_value_pct},
            "ev_buckets": ev_buckets(ev[known], net[known])}
