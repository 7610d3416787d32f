"""No look-ahead: labels read only the future, features/scaling/calibration only the past."""

from __future__ import annotations

from dataclasses import replace
from functools import cache

import numpy as np
import pytest

from traderai.contracts import Candles
from traderai.core.features import compute_features
from traderai.market.csv import bundled_candles_path, load_candles_csv
from traderai.model.labels import BARRIER_CANDLES, DIRECTION_HORIZON, direction_labels, triple_barrier_labels
from traderai.research.walkforward import (
    MarketFrame,
    WalkForwardConfig,
    WalkForwardResult,
    prepare_market,
    walk_forward,
)

CUT = 1200  # candles 0..CUT are "the past and present"; CUT+1.. the future


@cache
def btc() -> Candles:
    return load_candles_csv(bundled_candles_path("BTC/USDT"), "BTC/USDT").tail(1800)


def shuffled_after(candles: Candles, cut: int, seed: int = 0) -> Candles:
    """The same candles up to `cut`, the later ones permuted (whole candles, so each stays valid OHLCV)."""
    later = cut + 1 + np.random.default_rng(seed).permutation(len(candles) - cut - 1)
    order = np.concatenate([np.arange(cut + 1), later])
    return Candles(candles.symbol, candles.timeframe, candles.open_time_ms, candles.open[order], candles.high[order],
                   candles.low[order], candles.close[order], candles.volume[order])


def test_shuffling_the_future_leaves_every_feature_of_the_past_unchanged() -> None:
    original, shuffled = compute_features(btc()), compute_features(shuffled_after(btc(), CUT))
    np.testing.assert_array_equal(original[:CUT + 1], shuffled[:CUT + 1])
    assert not np.allclose(original[CUT + 30:], shuffled[CUT + 30:])  # the shuffle did change the future


def test_the_direction_label_reads_the_horizon_candle_and_nothing_else_ahead() -> None:
    close = btc().close.copy()
    labels = direction_labels(close)
    shuffled = direction_labels(shuffled_after(btc(), CUT).close)
    # Labels whose horizon candle lies in the untouched past are unchanged; later ones do change.
    np.testing.assert_array_equal(labels[:CUT + 1 - DIRECTION_HORIZON], shuffled[:CUT + 1 - DIRECTION_HORIZON])
    assert (labels[CUT + 1:-DIRECTION_HORIZON] != shuffled[CUT + 1:-DIRECTION_HORIZON]).any()
    # Changing the past before t does not move label t.
    earlier = close.copy()
    earlier[:500] *= 1.5
    np.testing.assert_array_equal(direction_labels(earlier)[500:], labels[500:])


def test_the_triple_barrier_label_reads_only_the_next_n_candles_and_atr_known_at_t() -> None:
    c = btc()
    frame = prepare_market(c)
    labels = frame.labels["triple_barrier"]
    # Changing every candle after t + N leaves label t unchanged.
    last = len(c) - 1 - BARRIER_CANDLES - 50
    high, low = c.high.copy(), c.low.copy()
    high[last + BARRIER_CANDLES + 1:] *= 10
    low[last + BARRIER_CANDLES + 1:] /= 10
    changed = triple_barrier_labels(high, low, c.close, frame.atr)
    np.testing.assert_array_equal(changed[:last + 1], labels[:last + 1])
    # But it does depend on the window: a spike right after t decides it.
    t = 50 + int(np.flatnonzero(np.isnan(labels[50:last]))[0])  # an undecided row past the ATR warm-up
    high[t + 1], low[t + 1] = c.close[t] + 5 * frame.atr[t], c.close[t]
    assert triple_barrier_labels(high, low, c.close, frame.atr)[t] == 1.0
    # The last N rows never have a label: their window is not complete.
    assert np.isnan(labels[-BARRIER_CANDLES:]).all()


CONFIG = WalkForwardConfig(folds=3, families=("logistic",), labelings=("direction",))


@cache
def frames() -> tuple[MarketFrame, ...]:
    return tuple(prepare_market(load_candles_csv(bundled_candles_path(s), s).tail(5000)) for s in ("ETH/USDT",
                                                                                                   "BNB/USDT"))


@cache
def baseline_run() -> WalkForwardResult:
    return walk_forward(frames(), CONFIG)


def _scrambled(frames: tuple[MarketFrame, ...], from_ms: float, *, features: bool, seed: int) -> list[MarketFrame]:
    """Frames whose labels (and optionally features) at or after `from_ms` are permuted."""
    rng = np.random.default_rng(seed)
    out = []
    for frame in frames:
        rows = np.flatnonzero(frame.candles.open_time_ms >= from_ms)
        order = rng.permutation(rows)
        labels = {k: v.copy() for k, v in frame.labels.items()}
        for values in labels.values():
            values[rows] = values[order]
        matrix = frame.features.copy()
        if features:
            matrix[rows] = matrix[order] * rng.uniform(0.5, 2.0, (rows.shape[0], 1))
        out.append(replace(frame, labels=labels, features=matrix))
    return out


def _fold_rows(result: WalkForwardResult, fold: int) -> np.ndarray:
    from datetime import UTC, datetime

    def ms(text: str) -> float:
        return datetime.strptime(text, "%Y-%m-%d %H:%M").replace(tzinfo=UTC).timestamp() * 1000

    info = result.folds[fold]
    return (result.rows.open_time_ms >= ms(info["test_from"])) & (result.rows.open_time_ms < ms(info["test_to"]))


@pytest.mark.parametrize("model", ["logistic", "logistic+isotonic", "logistic+sigmoid"])
def test_test_block_labels_never_reach_the_model_or_its_calibration(model: str) -> None:
    # Given the labels of the test blocks permuted (features untouched)
    base = baseline_run()
    first_test = base.folds[0]["test_from"]
    from datetime import UTC, datetime

    start = datetime.strptime(first_test, "%Y-%m-%d %H:%M").replace(tzinfo=UTC).timestamp() * 1000
    scrambled = walk_forward(_scrambled(frames(), start, features=False, seed=1), CONFIG)
    # Then the first fold's model, scaler and calibration are the same: identical OOS probabilities there
    rows = _fold_rows(base, 0)
    np.testing.assert_array_equal(base.oos[("direction", model)][rows], scrambled.oos[("direction", model)][rows])


def test_data_after_a_test_block_never_reaches_its_fold() -> None:
    # Given features AND labels after the first test block scrambled and rescaled (a StandardScaler
    # fitted on them would move)
    base = baseline_run()
    from datetime import UTC, datetime

    end = datetime.strptime(base.folds[0]["test_to"], "%Y-%m-%d %H:%M").replace(tzinfo=UTC).timestamp() * 1000
    scrambled = walk_forward(_scrambled(frames(), end, features=True, seed=2), CONFIG)
    rows = _fold_rows(base, 0)
    for model in ("logistic", "logistic+isotonic", "logistic+sigmoid"):
        np.testing.assert_array_equal(base.oos[("direction", model)][rows], scrambled.oos[("direction", model)][rows])
    later = _fold_rows(base, 2)
    key = ("direction", "logistic")
    assert not np.array_equal(base.oos[key][later], scrambled.oos[key][later])
