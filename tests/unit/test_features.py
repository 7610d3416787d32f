"""Features: TA-Lib agreement on real candles, no look-ahead, warm-up, gaps and speed."""

from __future__ import annotations

from functools import cache

import numpy as np
import pytest
import talib
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from traderai.contracts import Candles
from traderai.core import features
from traderai.core.features import (
    FEATURE_NAMES,
    FIRST_COMPLETE_ROW,
    WARMUP_CANDLES,
    atr,
    compute_features,
    macd,
    rsi,
)
from traderai.market.csv import bundled_candles_path, load_candles_csv

SKIP = 300  # compare after every indicator's seed has been forgotten


@cache
def real(symbol: str = "BTC/USDT") -> Candles:
    return load_candles_csv(bundled_candles_path(symbol, "15m"), symbol)


def _close_enough(ours: np.ndarray, reference: np.ndarray, close: np.ndarray) -> None:
    # 1e-6 relative; the absolute floor (1e-9 of the price) only matters where MACD's histogram
    # crosses zero and a relative comparison is meaningless.
    np.testing.assert_allclose(ours[SKIP:], reference[SKIP:], rtol=1e-6, atol=1e-9 * float(np.median(close)))


@pytest.mark.parametrize("symbol", ["BTC/USDT", "SOL/USDT"])
def test_rsi_macd_atr_match_talib_on_real_candles(symbol: str) -> None:
    c = real(symbol)
    _close_enough(rsi(c.close), talib.RSI(c.close, 14), c.close)
    _close_enough(atr(c.high, c.low, c.close), talib.ATR(c.high, c.low, c.close, 14), c.close)
    for ours, reference in zip(macd(c.close), talib.MACD(c.close, 12, 26, 9), strict=True):
        _close_enough(ours, reference, c.close)


@pytest.mark.parametrize("period", [5, 14, 30])
def test_atr_period_is_honoured_and_warm_up_matches_talib(period: int) -> None:
    c = real().slice(0, 2000)
    ours, reference = atr(c.high, c.low, c.close, period), talib.ATR(c.high, c.low, c.close, period)
    np.testing.assert_array_equal(np.isnan(ours), np.isnan(reference))
    np.testing.assert_allclose(ours[~np.isnan(ours)], reference[~np.isnan(reference)], rtol=1e-9)


def test_matrix_shape_and_nan_warm_up() -> None:
    c = real().slice(0, 1000)
    matrix = compute_features(c)
    assert matrix.shape == (1000, len(FEATURE_NAMES))
    assert matrix.dtype == np.float64
    incomplete = np.isnan(matrix).any(axis=1)
    assert incomplete[:FIRST_COMPLETE_ROW].all()
    assert not incomplete[FIRST_COMPLETE_ROW:].any()
    assert np.isfinite(matrix[FIRST_COMPLETE_ROW:]).all()


@pytest.mark.parametrize("n", [0, 1, 2, 15, 40, FIRST_COMPLETE_ROW])
def test_short_windows_give_nan_rows_not_errors(n: int) -> None:
    matrix = compute_features(real().slice(0, n))
    assert matrix.shape == (n, len(FEATURE_NAMES))
    assert np.isnan(matrix).any(axis=1).all()


@given(cut=st.integers(min_value=0, max_value=498), seed=st.integers(min_value=0, max_value=2**32 - 1),
       scale=st.floats(min_value=0.2, max_value=5.0))
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_no_look_ahead_changing_future_candles_leaves_the_past_unchanged(cut: int, seed: int,
                                                                         scale: float) -> None:
    """Given any candle t, when every candle after t changes, then rows 0..t are bit-identical."""
    c = real().slice(5000, 5500)
    rng = np.random.default_rng(seed)
    future = slice(cut + 1, len(c))
    k = len(c) - cut - 1

    def perturbed(values: np.ndarray) -> np.ndarray:
        out = values.copy()
        out[future] = values[future] * scale * rng.uniform(0.5, 1.5, k)
        return out

    changed = Candles(c.symbol, c.timeframe, c.open_time_ms, perturbed(c.open), perturbed(c.high),
                      perturbed(c.low), perturbed(c.close), perturbed(c.volume))
    np.testing.assert_array_equal(compute_features(changed)[:cut + 1], compute_features(c)[:cut + 1])


@given(end=st.integers(min_value=1, max_value=800))
@settings(max_examples=30, deadline=None)
def test_a_prefix_computes_the_same_rows_as_the_whole_history(end: int) -> None:
    c = real().slice(3000, 3800)
    np.testing.assert_allclose(compute_features(c.slice(0, end)), compute_features(c)[:end],
                               rtol=1e-12, atol=1e-15)


def test_a_warmup_window_reproduces_the_training_row() -> None:
    """Given the live window of WARMUP_CANDLES, the last row equals the full-history row (train = serve)."""
    c = real("ETH/USDT")
    full = compute_features(c)
    for end in range(WARMUP_CANDLES + 500, len(c), 1700):
        window = compute_features(c.slice(end - WARMUP_CANDLES, end))[-1]
        np.testing.assert_allclose(window, full[end - 1], rtol=0, atol=1e-6)


def test_gaps_and_flat_zero_volume_candles_stay_finite() -> None:
    """An exchange halt: flat zero-volume candles, then a hole in time; nothing crashes or explodes."""
    c = real().slice(0, 1200)
    o, h, lo, cl, v = (a.copy() for a in (c.open, c.high, c.low, c.close, c.volume))
    flat = slice(600, 640)
    for a in (o, h, lo, cl):
        a[flat] = cl[599]
    v[flat] = 0.0
    keep = np.r_[0:640, 652:1200]  # 12 candles missing
    halted = Candles(c.symbol, c.timeframe, c.open_time_ms[keep], o[keep], h[keep], lo[keep], cl[keep],
                     v[keep])
    matrix = compute_features(halted)
    assert np.isfinite(matrix[FIRST_COMPLETE_ROW:]).all()
    row = dict(zip(FEATURE_NAMES, matrix[639], strict=True))
    assert row["bb_pctb_20"] == 0.5 and row["logret_24"] == 0.0 and row["volume_z_96"] < 0


def test_a_completely_flat_market_gives_neutral_values() -> None:
    n = 300
    price, volume = np.full(n, 5.0), np.zeros(n)
    c = Candles("X/USDT", "15m", np.arange(n, dtype=np.int64) * 900_000, price, price, price, price, volume)
    row = dict(zip(FEATURE_NAMES, compute_features(c)[-1], strict=True))
    assert row["rsi_14"] == 50.0 and row["bb_pctb_20"] == 0.5 and row["volume_z_96"] == 0.0
    assert row["atr_rel"] == 0.0 and row["rvol_96"] == 0.0 and row["dist_sma_200"] == 0.0


def test_features_are_scale_free() -> None:
    """The same market quoted 1000x higher (or in other volume units) gives the same features."""
    c = real().slice(0, 800)
    scaled = Candles(c.symbol, c.timeframe, c.open_time_ms, c.open * 1000, c.high * 1000, c.low * 1000,
                     c.close * 1000, c.volume * 7)
    np.testing.assert_allclose(compute_features(scaled), compute_features(c), rtol=1e-9, atol=1e-12)


def test_recurrence_equals_the_sequential_loop() -> None:
    rng = np.random.default_rng(1)
    inputs = rng.normal(size=1000)
    expected, y = np.empty(1000), 3.0
    for i, x in enumerate(inputs):
        y = 0.9 * y + x
        expected[i] = y
    np.testing.assert_allclose(features._linear_recurrence(inputs, 0.9, 3.0), expected, rtol=1e-12)


def test_100k_candles_give_a_complete_matrix_past_the_warmup() -> None:
    # How fast is bench/features_bench.py's figure (make bench), not a timed test: a shared machine is noisy.
    rng = np.random.default_rng(7)
    n = 100_000
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.003, n)))
    spread = close * rng.uniform(0, 0.004, n)
    c = Candles("X/USDT", "15m", np.arange(n, dtype=np.int64) * 900_000, close, close + spread,
                close - spread, close, rng.uniform(0, 1000, n))
    matrix = compute_features(c)
    assert matrix.shape == (n, len(FEATURE_NAMES))
    assert np.isfinite(matrix[WARMUP_CANDLES:]).all()
