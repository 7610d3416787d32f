"""Statistics of realised trade results that overlap in time, and the multiple-testing correction.

Signals of different markets and sides are open at the same time and move together (one market
factor), so their net results are not independent draws: the plain s.e. (std / sqrt(n)) is too
small. `block_mean` treats calendar blocks at least as long as a signal's life as the independent
units (a cluster-robust s.e. of the mean over the blocks), which also covers the serial correlation
of consecutive signals inside a block.

A winner picked among K configurations has a t-statistic inflated by the search. `bonferroni`
asks its one-sided p-value to beat alpha / K (Bonferroni: valid whatever the dependence between
the configurations, conservative when they are correlated, as ours are).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist
from typing import Any

import numpy as np

DAY_MS = 86_400_000


@dataclass(frozen=True, slots=True)
class BlockMean:
    """Mean of per-trade values with a block (cluster-robust) standard error."""

    n: int
    blocks: int
    mean: float
    se: float  # NaN with fewer than 2 blocks
    naive_se: float  # std / sqrt(n), for comparison

    @property
    def t(self) -> float:
        return self.mean / self.se if self.se > 0 else float("nan")

    def as_dict(self) -> dict[str, Any]:
        return {"n": self.n, "blocks": self.blocks, "mean": self.mean, "se": self.se, "naive_se": self.naive_se,
                "t": self.t}


def block_length_ms(life_ms: int) -> int:
    """Blocks of whole days, at least twice a signal's life: a trade rarely straddles more than two."""
    return max(1, math.ceil(2 * life_ms / DAY_MS)) * DAY_MS


def block_mean(values: np.ndarray, times_ms: np.ndarray, block_ms: int) -> BlockMean:
    """Mean of `values` and its s.e. with calendar blocks of `block_ms` as the independent units.

    Var(mean) = B / (B - 1) * sum_b (S_b - mean * n_b)^2 / N^2, with S_b and n_b the sum and count
    of block b (the ratio-estimator / cluster-robust variance); it equals the plain variance of the
    mean when every block holds one value.
    """
    values = np.asarray(values, dtype=np.float64)
    n = int(values.shape[0])
    if n == 0:
        return BlockMean(0, 0, float("nan"), float("nan"), float("nan"))
    mean = float(values.mean())
    naive = float(values.std(ddof=1) / math.sqrt(n)) if n > 1 else float("nan")
    block = np.asarray(times_ms, dtype=np.int64) // block_ms
    _, index = np.unique(block, return_inverse=True)
    sums = np.bincount(index, weights=values)
    counts = np.bincount(index)
    b = int(sums.shape[0])
    if b < 2:
        return BlockMean(n, b, mean, float("nan"), naive)
    variance = b / (b - 1) * float(((sums - mean * counts) ** 2).sum()) / n**2
    return BlockMean(n, b, mean, math.sqrt(variance), naive)


def one_sided_p(t: float) -> float:
    """P(Z >= t) under the standard normal (the t-statistic of a mean over many blocks)."""
    return 0.5 * math.erfc(t / math.sqrt(2.0)) if math.isfinite(t) else float("nan")


def bonferroni(t: float, configurations: int, alpha: float = 0.05) -> dict[str, Any]:
    """The winner's one-sided test after K configurations were tried: p * K < alpha, i.e. t > z(1 - alpha/K)."""
    if configurations < 1:
        raise ValueError("configurations must be at least 1")
    p = one_sided_p(t)
    threshold = NormalDist().inv_cdf(1.0 - alpha / configurations)
    return {"t": t, "configurations": configurations, "alpha": alpha, "p_one_sided": p,
            "p_adjusted": min(1.0, p * configurations) if math.isfinite(p) else float("nan"),
            "t_threshold": threshold, "survives": bool(math.isfinite(t) and t > threshold)}


def spearman(x: np.ndarray, y: np.ndarray) -> float:
    """Spearman rank correlation (average ranks for ties); NaN with fewer than 3 points or no spread."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if x.shape[0] < 3:
        return float("nan")

    def ranks(v: np.ndarray) -> np.ndarray:
        order = np.argsort(v, kind="stable")
        r = np.empty(v.shape[0])
        r[order] = np.arange(v.shape[0], dtype=np.float64)
        for value in np.unique(v):  # average the ranks of ties
            tied = v == value
            if tied.sum() > 1:
                r[tied] = r[tied].mean()
        return r

    rx, ry = ranks(x), ranks(y)
    if rx.std() == 0 or ry.std() == 0:
        return float("nan")
    return float(np.corrcoef(rx, ry)[0, 1])


def ev_deciles(predicted: np.ndarray, realised: np.ndarray, times_ms: np.ndarray, block_ms: int,
               bins: int = 10) -> list[dict[str, Any]]:
    """Equal-count bins of predicted EV: mean predicted, mean realised with its block s.e., count."""
    predicted, realised = np.asarray(predicted, dtype=np.float64), np.asarray(realised, dtype=np.float64)
    order = np.argsort(predicted, kind="stable")
    out = []
    for group in np.array_split(order, min(bins, max(1, predicted.shape[0]))):
        if group.shape[0] == 0:
            continue
        stats = block_mean(realised[group], np.asarray(times_ms)[group], block_ms)
        out.append({"predicted": float(predicted[group].mean()), "realised": stats.mean, "se": stats.se,
                    "n": stats.n})
    return out


def calibration_figures(predicted: np.ndarray, realised: np.ndarray, times_ms: np.ndarray,
                        block_ms: int) -> dict[str, Any]:
    """The issue's "EV is calibrated" figures for one group of signals.

    mean predicted vs mean realised, the gap in block s.e. (calibrated: |gap| <= 2 s.e., judged
    where there are >= 30 signals), and the Spearman correlation of the decile means (judged >= 0.5
    where there are >= 300 signals). Signals without a prediction (NaN) are left out.
    """
    predicted, realised = np.asarray(predicted, dtype=np.float64), np.asarray(realised, dtype=np.float64)
    scored = np.isfinite(predicted)
    predicted, realised, times_ms = predicted[scored], realised[scored], np.asarray(times_ms)[scored]
    realised_stats = block_mean(realised, times_ms, block_ms)
    n = realised_stats.n
    if n == 0:
        return {"n": 0}
    gap = float(np.mean(predicted)) - realised_stats.mean
    deciles = ev_deciles(predicted, realised, times_ms, block_ms)
    rho = spearman(np.array([d["predicted"] for d in deciles]), np.array([d["realised"] for d in deciles]))
    gap_se = abs(gap) / realised_stats.se if realised_stats.se > 0 else float("nan")
    return {"n": n, "mean_predicted": float(np.mean(predicted)), "mean_realised": realised_stats.mean,
            "se": realised_stats.se, "gap": gap, "gap_in_se": gap_se,
            "calibrated": (bool(gap_se <= 2.0) if math.isfinite(gap_se) else None) if n >= 30 else None,
            "decile_spearman": rho,
            "ranks_ok": (bool(rho >= 0.5) if math.isfinite(rho) else False) if n >= 300 else None,
            "deciles": deciles}


EULER_GAMMA = 0.5772156649015329


def daily_series(values: np.ndarray, times_ms: np.ndarray, first_ms: int, end_ms: int) -> np.ndarray:
    """Sum of `values` per UTC day from `first_ms`'s day to the day before `end_ms`, zeros on quiet days:
    a configuration's P&L per day (a trade counted on the day it opened)."""
    first_day, last_day = int(first_ms) // DAY_MS, (int(end_ms) - 1) // DAY_MS
    days = np.asarray(times_ms, dtype=np.int64) // DAY_MS - first_day
    inside = (days >= 0) & (days <= last_day - first_day)
    return np.bincount(days[inside], weights=np.asarray(values, dtype=np.float64)[inside],
                       minlength=last_day - first_day + 1)


def sharpe_moments(series: np.ndarray) -> dict[str, float]:
    """Per-period Sharpe ratio (mean / sample std), skewness and (non-excess) kurtosis of a series."""
    x = np.asarray(series, dtype=np.float64)
    if x.shape[0] < 3 or x.std() == 0:
        return {"sharpe": float("nan"), "skew": float("nan"), "kurtosis": float("nan"), "periods": int(x.shape[0])}
    d = x - x.mean()
    sigma = math.sqrt(float((d**2).mean()))
    return {"sharpe": float(x.mean() / x.std(ddof=1)), "skew": float((d**3).mean() / sigma**3),
            "kurtosis": float((d**4).mean() / sigma**4), "periods": int(x.shape[0])}


def deflated_sharpe(sharpe: float, trial_sharpes: np.ndarray, periods: int, skew: float,
                    kurtosis: float) -> dict[str, Any]:
    """Deflated Sharpe ratio (Bailey & López de Prado, 2014) of a winner chosen among N trials.

    SR0 = sqrt(V[SR_n]) * ((1 - g) * Z^-1(1 - 1/N) + g * Z^-1(1 - 1/(N e))), g = Euler-Mascheroni:
    the Sharpe ratio the best of N skill-less trials would be expected to show. DSR = Z((SR - SR0) *
    sqrt(T - 1) / sqrt(1 - skew * SR + (kurtosis - 1) / 4 * SR^2)): the probability that the
    winner's true Sharpe ratio beats that; a finding needs DSR >= 0.95.
    """
    trials = np.asarray([s for s in trial_sharpes if math.isfinite(s)], dtype=np.float64)
    n = int(trials.shape[0])
    if n < 2 or periods < 2 or not math.isfinite(sharpe):
        return {"dsr": float("nan"), "sr0": float("nan"), "trials": n, "survives": False}
    z = NormalDist().inv_cdf
    sr0 = math.sqrt(float(trials.var(ddof=1))) * ((1 - EULER_GAMMA) * z(1 - 1 / n)
                                                 + EULER_GAMMA * z(1 - 1 / (n * math.e)))
    spread = 1 - skew * sharpe + (kurtosis - 1) / 4 * sharpe**2
    dsr = NormalDist().cdf((sharpe - sr0) * math.sqrt(periods - 1) / math.sqrt(spread)) if spread > 0 else float("nan")
    return {"dsr": dsr, "sr0": sr0, "sharpe": sharpe, "trials": n, "periods": periods,
            "survives": bool(math.isfinite(dsr) and dsr >= 0.95 and sharpe > 0)}
