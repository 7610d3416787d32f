"""The outcome model: per side, the probabilities of the five outcomes of the bracket that is traded.

Training side (scikit-learn is imported lazily, inside the fitting functions only; the predict path
never imports this module: it serves the exported JSON with `traderai.model.serving`).

- Labels: `model.labels.outcome_labels` (first touch from high/low, the tracker's rule), for the
  bracket of the default Strategy: SL 1 ATR, TP 2 / 3.5 / 6 ATR, a life of 96 candles at 15m.
- Model, per side: StandardScaler + multinomial LogisticRegression on the 18 scale-free features,
  rows of all markets pooled (as the direction model).
- Calibration: a shrink toward the class base rates, ``p' = (1 - λ) p + λ π``, with π the class
  frequencies of the rows before the test stretch and λ in [0, 1] fitted (log loss) on the
  calibration slice, a later stretch than the fit slice. Why this and not temperature scaling:
  the risk out of sample is that the features' information fades or the class rates move, not that
  a well-regularised linear softmax is over-sharp; the shrink falls back exactly to the base rate
  when the model carries nothing (λ → 1), keeps probabilities non-negative and summing to 1, cannot
  reorder rows, and is ONE parameter fitted on the whole calibration slice (thousands of rows), so
  no part of the map rests on a handful of rows.
- Expected value (CONTRACT-12): ``EV = Σ_o p_o · payoff_o − costs`` (% of notional); every payoff is
  a multiple of ``ATR / entry × 100``; the expiry payoff uses ``expiry_exit_atr`` = the mean, over
  the fit slice's expiry rows, of each tranche's exit distance in ATR units.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from traderai.contracts import TIMEFRAME_SECONDS, Candles
from traderai.core.features import atr as atr_of
from traderai.core.features import compute_features
from traderai.model.labels import OUTCOME_LIFE_CANDLES, OUTCOME_SL_ATR, OUTCOME_TP_ATR, OUTCOMES, outcome_labels

SIDES = ("LONG", "SHORT")


@dataclass(frozen=True, slots=True)
class Bracket:
    """The geometry an outcome model is trained for (CONTRACT-12 `bracket`)."""

    sl_atr: float = OUTCOME_SL_ATR
    tp_atr: tuple[float, float, float] = OUTCOME_TP_ATR
    life_candles: int = OUTCOME_LIFE_CANDLES

    def to_dict(self) -> dict[str, Any]:
        return {"sl_atr": self.sl_atr, "tp_atr": list(self.tp_atr), "life_candles": self.life_candles}

    @classmethod
    def of_strategy(cls, strategy: Any, timeframe: str) -> Bracket:
        """The bracket a Strategy trades at a timeframe (life = candles wholly inside SIGNAL_TTL_HOURS)."""
        tp1, tp2, tp3 = (float(m) for m in strategy.tp_atr_multipliers)
        return cls(float(strategy.sl_atr_multiplier), (tp1, tp2, tp3),
                   int(strategy.signal_ttl_hours * 3600 // TIMEFRAME_SECONDS[timeframe]))


@dataclass(frozen=True, slots=True)
class OutcomeRows:
    """Rows with complete features of every market, pooled, with both sides' outcome labels."""

    features: np.ndarray  # (n, k)
    open_time_ms: np.ndarray
    market: np.ndarray  # index into symbols
    row: np.ndarray  # index into that market's candles
    atr_pct: np.ndarray  # ATR[t] / close[t] x 100: what one ATR is worth in % of notional
    outcome: dict[str, np.ndarray]  # side -> class index (-1 unlabelled)
    exit_atr: dict[str, np.ndarray]  # side -> (n, 3) tranche exit distances in ATR units
    symbols: tuple[str, ...]


def outcome_rows(markets: Sequence[Candles], bracket: Bracket = Bracket()) -> OutcomeRows:
    """Features (past only) and both sides' outcome labels (future only) of every market, pooled."""
    parts: dict[str, list[np.ndarray]] = {k: [] for k in ("features", "time", "market", "row", "atr_pct")}
    labels: dict[str, list[np.ndarray]] = {s: [] for s in SIDES}
    exits: dict[str, list[np.ndarray]] = {s: [] for s in SIDES}
    for index, candles in enumerate(markets):
        features = compute_features(candles)
        atr = atr_of(candles.high, candles.low, candles.close)
        ok = np.flatnonzero(np.isfinite(features).all(axis=1) & np.isfinite(atr) & (atr > 0))
        step_ms = TIMEFRAME_SECONDS[candles.timeframe] * 1000
        for side in SIDES:
            side_labels = outcome_labels(candles.high, candles.low, candles.close, atr, long=side == "LONG",
                                         sl_atr=bracket.sl_atr, tp_atr=bracket.tp_atr, life=bracket.life_candles,
                                         open_time_ms=candles.open_time_ms, step_ms=step_ms)
            labels[side].append(side_labels.outcome[ok])
            exits[side].append(side_labels.exit_atr[ok])
        parts["features"].append(features[ok])
        parts["time"].append(candles.open_time_ms[ok])
        parts["market"].append(np.full(ok.shape[0], index, dtype=np.int64))
        parts["row"].append(ok)
        parts["atr_pct"].append(atr[ok] / np.asarray(candles.close)[ok] * 100.0)
    return OutcomeRows(features=np.concatenate(parts["features"]), open_time_ms=np.concatenate(parts["time"]),
                       market=np.concatenate(parts["market"]), row=np.concatenate(parts["row"]),
                       atr_pct=np.concatenate(parts["atr_pct"]),
                       outcome={s: np.concatenate(v) for s, v in labels.items()},
                       exit_atr={s: np.concatenate(v) for s, v in exits.items()},
                       symbols=tuple(c.symbol for c in markets))


def fit_outcome_estimator(features: np.ndarray, outcome: np.ndarray, *, c: float = 1.0) -> Any:
    """StandardScaler + multinomial LogisticRegression of the five classes (all must occur)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    missing = sorted(set(range(len(OUTCOMES))) - set(np.unique(outcome).tolist()))
    if missing:
        raise ValueError(f"outcomes {[OUTCOMES[m] for m in missing]} never occur in the fit slice: "
                         f"too few rows to fit the outcome model")
    return make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=3000)).fit(features, outcome)


def class_rates(outcome: np.ndarray) -> np.ndarray:
    """Frequencies of the five classes among labelled rows."""
    labelled = outcome[outcome >= 0]
    return np.bincount(labelled, minlength=len(OUTCOMES)) / max(labelled.shape[0], 1)


def shrink(probability: np.ndarray, prior: np.ndarray, weight: float) -> np.ndarray:
    """``(1 - weight) · probability + weight · prior``, row by row (the calibration; serving repeats it)."""
    return (1.0 - weight) * probability + weight * prior[None, :]


def log_loss(probability: np.ndarray, outcome: np.ndarray) -> float:
    """Mean negative log-likelihood of the observed classes."""
    picked = probability[np.arange(outcome.shape[0]), outcome]
    return float(-np.mean(np.log(np.clip(picked, 1e-15, 1.0))))


def fit_shrink(probability: np.ndarray, outcome: np.ndarray, prior: np.ndarray) -> float:
    """λ in [0, 1] minimising the calibration slice's log loss of `shrink` (convex in λ: golden section)."""
    lo, hi = 0.0, 1.0
    ratio = (math.sqrt(5.0) - 1.0) / 2.0
    a, b = hi - ratio * (hi - lo), lo + ratio * (hi - lo)
    fa, fb = (log_loss(shrink(probability, prior, x), outcome) for x in (a, b))
    for _ in range(60):  # the bracket shrinks to 0.618^60 ~ 3e-13
        if fa <= fb:
            hi, b, fb = b, a, fa
            a = hi - ratio * (hi - lo)
            fa = log_loss(shrink(probability, prior, a), outcome)
        else:
            lo, a, fa = a, b, fb
            b = lo + ratio * (hi - lo)
            fb = log_loss(shrink(probability, prior, b), outcome)
    best = (lo + hi) / 2.0
    # The ends are candidates too (the optimum may sit on a bound).
    return min((best, 0.0, 1.0), key=lambda x: log_loss(shrink(probability, prior, x), outcome))


@dataclass(frozen=True, slots=True)
class OutcomeSide:
    """One side's fitted scikit-learn pipeline, its shrink and what the EV needs."""

    estimator: Any
    weight: float  # λ
    prior: np.ndarray  # π, the class base rates the shrink moves toward
    expiry_exit_atr: tuple[float, float, float]

    def predict_proba(self, features: np.ndarray) -> np.ndarray:
        """(n, 5) calibrated probabilities in OUTCOMES order: the reference the served model is pinned to."""
        return shrink(self.estimator.predict_proba(features), self.prior, self.weight)


@dataclass(frozen=True, slots=True)
class OutcomeModel:
    """Both sides, the bracket they were trained for."""

    sides: Mapping[str, OutcomeSide]
    bracket: Bracket


def export_outcome(model: OutcomeModel) -> dict[str, Any]:
    """The artifact's plain-JSON `outcome` section (`serving` evaluates it with numpy)."""
    sides = {}
    for side, fitted in model.sides.items():
        scaler, logistic = fitted.estimator[0], fitted.estimator[-1]
        if list(logistic.classes_) != list(range(len(OUTCOMES))):
            raise ValueError(f"expected classes 0..{len(OUTCOMES) - 1}, got {list(logistic.classes_)}")
        sides[side] = {"scaler": {"mean": scaler.mean_.tolist(), "scale": scaler.scale_.tolist()},
                       "coef": logistic.coef_.tolist(), "intercept": logistic.intercept_.tolist(),
                       "calibration": {"kind": "shrink", "weight": float(fitted.weight),
                                       "prior": [float(v) for v in fitted.prior]},
                       "expiry_exit_atr": [float(v) for v in fitted.expiry_exit_atr]}
    return {"classes": list(OUTCOMES), "bracket": model.bracket.to_dict(), "sides": sides}


def payoff_atr(weights: Sequence[float], bracket: Bracket, expiry_exit: Sequence[float]) -> np.ndarray:
    """Each outcome's payoff in ATR units before costs (CONTRACT-12's table, divided by ATR/entry × 100)."""
    w1, w2, w3 = weights
    tp1, tp2, tp3 = bracket.tp_atr
    sl = bracket.sl_atr
    return np.array([-sl, w1 * tp1 - (w2 + w3) * sl, w1 * tp1 + w2 * tp2 - w3 * sl,
                     w1 * tp1 + w2 * tp2 + w3 * tp3, sum(w * e for w, e in zip(weights, expiry_exit, strict=True))])


def expected_value_pct(probability: np.ndarray, atr_pct: np.ndarray, weights: Sequence[float], bracket: Bracket,
                       expiry_exit: Sequence[float], costs_pct: float) -> np.ndarray:
    """``Σ_o p_o · payoff_o − costs`` in % of notional, one value per row of `probability` (n, 5)."""
    return (np.asarray(probability) @ payoff_atr(weights, bracket, expiry_exit)) * np.asarray(atr_pct) - costs_pct


def brier(probability: np.ndarray, outcome: np.ndarray) -> float:
    """Multi-class Brier score: mean over rows of Σ_o (p_o − 1[o observed])²."""
    onehot = np.eye(len(OUTCOMES))[outcome]
    return float(np.mean(np.sum((probability - onehot) ** 2, axis=1)))


def newey_west_se(values: np.ndarray) -> float:
    """Standard error of the mean of a time-ordered series: the larger of the naive one and Newey-West's
    (Bartlett weights, lag ⌊4 (n/100)^(2/9)⌋), so serial correlation (regimes) never makes it smaller."""
    x = np.asarray(values, dtype=np.float64)
    n = x.shape[0]
    if n < 2:
        return float("nan")
    naive = float(x.std(ddof=1) / math.sqrt(n))
    d = x - x.mean()
    lag = min(int(4 * (n / 100.0) ** (2.0 / 9.0)), n - 1)
    variance = float(d @ d) / n
    for k in range(1, lag + 1):
        variance += 2.0 * (1.0 - k / (lag + 1.0)) * float(d[k:] @ d[:-k]) / n
    return max(naive, math.sqrt(max(variance, 0.0) / n))
