"""Candidate features (market factor, window aggregates, calendar) and resampled timeframes: no look-ahead."""

from __future__ import annotations

from functools import cache

import numpy as np
import pytest

from traderai.contracts import Candles
from traderai.core.features import FEATURE_NAMES, compute_features
from traderai.market.csv import bundled_candles_path, load_candles_csv
from traderai.research.extended import (
    EXTENDED_NAMES,
    align,
    calendar_columns,
    extended_features,
    resample,
)

CUT = 1200


@cache
def market(symbol: str) -> Candles:
    return load_candles_csv(bundled_candles_path(symbol), symbol).tail(1800)


def changed_after(candles: Candles, cut: int, seed: int) -> Candles:
    """The same candles up to `cut`; every later candle's prices scaled by a random factor (still valid OHLC)."""
    scale = np.ones(len(candles))
    scale[cut + 1:] = np.random.default_rng(seed).uniform(0.7, 1.4, len(candles) - cut - 1)
    volume = candles.volume.copy()
    volume[cut + 1:] *= 3.0
    return Candles(candles.symbol, candles.timeframe, candles.open_time_ms, candles.open * scale,
                   candles.high * scale, candles.low * scale, candles.close * scale, volume)


def test_changing_the_candles_after_t_of_the_market_and_of_btc_changes_nothing_at_t() -> None:
    eth, btc = market("ETH/USDT"), market("BTC/USDT")
    original = extended_features(eth, btc)
    changed = extended_features(changed_after(eth, CUT, 1), changed_after(btc, CUT, 2))
    np.testing.assert_array_equal(original[:CUT + 1], changed[:CUT + 1])
    # Every new column does read the candles (the change shows after the cut).
    later = ~np.isclose(original[CUT + 100:], changed[CUT + 100:], equal_nan=True)
    moved = later.any(axis=0)
    calendar = [EXTENDED_NAMES.index(n) for n in ("hour_sin", "hour_cos", "dow_sin", "dow_cos")]
    assert moved[[i for i in range(len(FEATURE_NAMES), len(EXTENDED_NAMES)) if i not in calendar]].all()
    assert not moved[calendar].any()  # the calendar depends on the time only


def test_the_first_18_columns_are_the_served_features_and_rows_complete_after_warm_up() -> None:
    eth, btc = market("ETH/USDT"), market("BTC/USDT")
    extended = extended_features(eth, btc)
    assert extended.shape == (len(eth), len(EXTENDED_NAMES))
    np.testing.assert_array_equal(extended[:, :len(FEATURE_NAMES)], compute_features(eth))
    assert np.isfinite(extended[400:]).all()


def test_the_market_factor_is_btc_at_the_same_open_time_and_missing_btc_candles_give_nan() -> None:
    eth, btc = market("ETH/USDT"), market("BTC/USDT")
    factor = extended_features(btc, btc)[:, len(FEATURE_NAMES):len(FEATURE_NAMES) + 3]
    holey = btc.slice(0, 900)  # BTC stops at row 899
    on_eth = extended_features(eth, holey)[:, len(FEATURE_NAMES):len(FEATURE_NAMES) + 3]
    # ETH and BTC bundles share open times: ETH's row t carries BTC's row t's factor.
    assert (eth.open_time_ms == btc.open_time_ms).all()
    np.testing.assert_array_equal(on_eth[100:900], factor[100:900])
    assert np.isnan(on_eth[900:]).all()
    assert np.isnan(extended_features(eth, None)[:, len(FEATURE_NAMES)]).all()
    # By hand: the 4-candle log return of BTC's close.
    np.testing.assert_allclose(factor[500, 0], np.log(btc.close[500] / btc.close[496]), rtol=1e-12)


def test_align_finds_exact_open_times_only() -> None:
    values = np.array([[1.0], [2.0], [3.0]])
    out = align(values, np.array([10, 20, 30]), np.array([5, 10, 25, 30, 40]))
    np.testing.assert_array_equal(out[:, 0], [np.nan, 1.0, np.nan, 3.0, np.nan])


def test_calendar_columns_by_hand() -> None:
    # 2024-01-01 was a Monday; 06:00 UTC is a quarter of the day.
    monday_six = 1704088800000
    row = calendar_columns(np.array([monday_six]))[0]
    np.testing.assert_allclose(row, [1.0, 0.0, 0.0, 1.0], atol=1e-12)


def test_the_factor_must_be_of_the_same_timeframe() -> None:
    btc = market("BTC/USDT")
    with pytest.raises(ValueError, match="factor candles are 1h"):
        extended_features(btc, resample(btc, "1h"))


def _candles(times_min: list[int], closes: list[float]) -> Candles:
    t = np.array(times_min, dtype=np.int64) * 60_000
    c = np.array(closes)
    return Candles("X/USDT", "15m", t, c - 0.5, c + 1.0, c - 1.0, c, np.ones_like(c))


def test_resample_builds_complete_hours_and_drops_a_bucket_with_a_gap() -> None:
    # Hour 0 complete, hour 1 misses its 1:30 candle, hour 2 complete.
    times = [0, 15, 30, 45, 60, 75, 105, 120, 135, 150, 165]
    closes = [10, 11, 12, 13, 20, 21, 23, 30, 31, 29, 35]
    hourly = resample(_candles(times, closes), "1h")
    assert hourly.timeframe == "1h"
    np.testing.assert_array_equal(hourly.open_time_ms, [0, 7_200_000])
    np.testing.assert_array_equal(hourly.open, [9.5, 29.5])
    np.testing.assert_array_equal(hourly.high, [14.0, 36.0])
    np.testing.assert_array_equal(hourly.low, [9.0, 28.0])
    np.testing.assert_array_equal(hourly.close, [13.0, 35.0])
    np.testing.assert_array_equal(hourly.volume, [4.0, 4.0])


def test_resample_of_real_candles_and_no_look_ahead() -> None:
    btc = market("BTC/USDT")
    four = resample(btc, "4h")
    assert len(four) in (len(btc) // 16, len(btc) // 16 - 1)
    # A 4h candle reads only its own 16 candles: changing later 15m candles leaves it unchanged.
    changed = resample(changed_after(btc, CUT, 3), "4h")
    last_before = int(np.flatnonzero(four.open_time_ms + 4 * 3_600_000 <= btc.open_time_ms[CUT + 1])[-1])
    for name in ("open", "high", "low", "close", "volume"):
        np.testing.assert_array_equal(getattr(four, name)[:last_before + 1], getattr(changed, name)[:last_before + 1])
    with pytest.raises(ValueError, match="cannot build"):
        resample(four, "1h")
