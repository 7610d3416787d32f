"""Block standard errors of overlapping trades, the Bonferroni correction, Spearman, EV deciles."""

from __future__ import annotations

import itertools
import math
from statistics import NormalDist

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from traderai.research.stats import (
    DAY_MS,
    EULER_GAMMA,
    block_length_ms,
    block_mean,
    bonferroni,
    calibration_figures,
    daily_series,
    deflated_sharpe,
    ev_deciles,
    one_sided_p,
    sharpe_moments,
    spearman,
)


def test_block_mean_by_hand() -> None:
    # Blocks: day 0 holds 1, 3; day 1 holds 2; day 2 holds -1, 0, 1.
    values = np.array([1.0, 3.0, 2.0, -1.0, 0.0, 1.0])
    times = np.array([0, 1, 0, 0, 1, 2]) * DAY_MS // 3 + np.array([0, 0, 1, 2, 2, 2]) * DAY_MS
    result = block_mean(values, times, DAY_MS)
    mean = 1.0
    sums, counts = np.array([4.0, 2.0, 0.0]), np.array([2, 1, 3])
    expected = math.sqrt(3 / 2 * ((sums - mean * counts) ** 2).sum() / 36)
    assert (result.n, result.blocks) == (6, 3)
    assert math.isclose(result.mean, mean) and math.isclose(result.se, expected)
    assert math.isclose(result.naive_se, values.std(ddof=1) / math.sqrt(6))


@settings(max_examples=50, deadline=None)
@given(st.lists(st.floats(-5, 5, allow_nan=False), min_size=2, max_size=60))
def test_one_value_per_block_gives_the_plain_standard_error(values: list[float]) -> None:
    v = np.array(values)
    result = block_mean(v, np.arange(v.shape[0]) * DAY_MS, DAY_MS)
    # Cluster-robust with singleton blocks = sum of squared deviations / (n (n - 1)) = plain s.e.
    assert math.isclose(result.se, result.naive_se, rel_tol=1e-9, abs_tol=1e-12)


def test_copies_of_a_trade_inside_a_block_widen_the_error_not_narrow_it() -> None:
    rng = np.random.default_rng(0)
    base = rng.normal(0, 1, 200)
    alone = block_mean(base, np.arange(200) * DAY_MS, DAY_MS)
    # Four perfectly correlated copies per day (four markets moving together):
    copies = block_mean(np.repeat(base, 4), np.repeat(np.arange(200) * DAY_MS, 4), DAY_MS)
    assert math.isclose(copies.mean, alone.mean)
    assert math.isclose(copies.se, alone.se, rel_tol=1e-9)  # the copies add no information ...
    assert copies.naive_se < 0.6 * alone.se  # ... while the naive s.e. claims they halve the error


def test_block_length_covers_twice_the_life_in_whole_days() -> None:
    assert block_length_ms(24 * 3_600_000) == 2 * DAY_MS
    assert block_length_ms(48 * 3_600_000) == 4 * DAY_MS
    assert block_length_ms(3_600_000) == DAY_MS


def test_bonferroni_thresholds() -> None:
    assert math.isclose(one_sided_p(0.0), 0.5)
    assert math.isclose(one_sided_p(1.959963984540054), 0.025, rel_tol=1e-9)
    one = bonferroni(2.0, 1)
    assert one["survives"] and math.isclose(one["t_threshold"], 1.6448536269514722, rel_tol=1e-9)
    many = bonferroni(2.0, 36)
    assert not many["survives"]
    assert math.isclose(many["p_adjusted"], 36 * one_sided_p(2.0))
    assert math.isclose(bonferroni(3.5, 36)["t_threshold"], 2.9913, abs_tol=1e-3)
    assert bonferroni(3.5, 36)["survives"]
    assert not bonferroni(float("nan"), 3)["survives"]


def test_spearman_by_hand_and_with_ties() -> None:
    assert spearman(np.array([1, 2, 3, 4.0]), np.array([10, 20, 30, 40.0])) == 1.0
    assert math.isclose(spearman(np.array([1, 2, 3, 4.0]), np.array([4, 3, 2, 1.0])), -1.0)
    # Ties: y ranks (0.5, 0.5, 2, 3) against x ranks (0, 1, 2, 3): Pearson of the ranks.
    expected = np.corrcoef([0, 1, 2, 3], [0.5, 0.5, 2, 3])[0, 1]
    assert math.isclose(spearman(np.array([1, 2, 3, 4.0]), np.array([5, 5, 6, 7.0])), expected)
    assert math.isnan(spearman(np.array([1.0, 2.0]), np.array([1.0, 2.0])))


def test_ev_deciles_and_calibration_figures() -> None:
    rng = np.random.default_rng(1)
    predicted = rng.normal(-0.3, 0.2, 3000)
    realised = predicted + rng.normal(0, 1.0, 3000)  # calibrated by construction
    times = np.arange(3000) * (DAY_MS // 4)
    deciles = ev_deciles(predicted, realised, times, DAY_MS)
    assert len(deciles) == 10 and sum(d["n"] for d in deciles) == 3000
    assert all(a["predicted"] <= b["predicted"] for a, b in itertools.pairwise(deciles))
    figures = calibration_figures(predicted, realised, times, DAY_MS)
    assert figures["calibrated"] is True and figures["gap_in_se"] <= 2
    assert figures["decile_spearman"] >= 0.5 and figures["ranks_ok"] is True
    # Shifted by 3.4 points (the seed's best-case figure): far outside 2 s.e.
    off = calibration_figures(predicted + 3.4, realised, times, DAY_MS)
    assert off["calibrated"] is False and off["gap"] > 3
    # Under 30 signals nothing is judged.
    few = calibration_figures(predicted[:20], realised[:20], times[:20], DAY_MS)
    assert few["calibrated"] is None and few["ranks_ok"] is None


def test_daily_series_sums_each_day_and_keeps_quiet_days_at_zero() -> None:
    times = np.array([0, DAY_MS // 2, 2 * DAY_MS + 5, 9 * DAY_MS])  # the last one is past the end
    series = daily_series(np.array([1.0, -0.5, 2.0, 7.0]), times, 0, 3 * DAY_MS)
    np.testing.assert_array_equal(series, [0.5, 0.0, 2.0])


def test_sharpe_moments_of_a_normal_looking_series() -> None:
    x = np.random.default_rng(3).normal(0.1, 1.0, 20_000)
    m = sharpe_moments(x)
    assert abs(m["sharpe"] - 0.1) < 0.02 and abs(m["skew"]) < 0.1 and abs(m["kurtosis"] - 3.0) < 0.15
    assert math.isnan(sharpe_moments(np.zeros(10))["sharpe"])


def test_deflated_sharpe_by_hand() -> None:
    trials = np.array([0.00, 0.02, -0.01, 0.03, 0.01])
    z = NormalDist().inv_cdf
    sr0 = float(np.std(trials, ddof=1)) * ((1 - EULER_GAMMA) * z(1 - 1 / 5) + EULER_GAMMA * z(1 - 1 / (5 * math.e)))
    # Normal returns (skew 0, kurtosis 3): the denominator is sqrt(1 + SR^2 / 2).
    expected = NormalDist().cdf((0.03 - sr0) * math.sqrt(999) / math.sqrt(1 + 0.03**2 / 2))
    out = deflated_sharpe(0.03, trials, 1000, 0.0, 3.0)
    assert math.isclose(out["sr0"], sr0) and math.isclose(out["dsr"], expected)
    assert out["survives"] is (expected >= 0.95)
    # More trials with the same spread raise the bar; a long record of a large Sharpe ratio clears it.
    assert deflated_sharpe(0.03, np.tile(trials, 20), 1000, 0.0, 3.0)["sr0"] > sr0
    assert deflated_sharpe(0.2, trials, 1000, 0.0, 3.0)["survives"]
    assert not deflated_sharpe(float("nan"), trials, 1000, 0.0, 3.0)["survives"]
