"""First-touch outcome labels of the traded bracket equal the tracker's rule and read only the future."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from traderai.contracts import SignalStatus
from traderai.core.outcome import Bar, TradeSetup, resolve
from traderai.model.labels import (
    OUTCOMES,
    UNLABELLED,
    expiry_exit_atr,
    outcome_labels,
)

STEP_MS = 15 * 60 * 1000
T0 = int(datetime(2025, 1, 1, tzinfo=UTC).timestamp() * 1000)


def path(*candles: tuple[float, float, float], extra: int = 0) -> tuple[np.ndarray, ...]:
    """(high, low, close, atr): candle 0 is the signal candle (entry 100, ATR 1), then `candles`,
    then `extra` flat candles at 100."""
    rows = [(100.0, 100.0, 100.0), *candles, *[(100.0, 100.0, 100.0)] * extra]
    high, low, close = (np.array([r[i] for r in rows]) for i in range(3))
    return high, low, close, np.ones(len(rows))


def label(candles: list[tuple[float, float, float]], *, long: bool = True, life: int = 3, extra: int = 0):
    high, low, close, atr = path(*candles, extra=extra)
    return outcome_labels(high, low, close, atr, long=long, life=life)


def name(labels, t: int = 0) -> str:
    return OUTCOMES[labels.outcome[t]]


# Entry 100, ATR 1: LONG TPs 102 / 103.5 / 106, SL 99; SHORT TPs 98 / 96.5 / 94, SL 101.

def test_the_stop_before_any_target() -> None:
    labels = label([(100.5, 98.9, 99.0), (100.0, 99.0, 100.0), (100.0, 99.5, 100.0)])
    assert name(labels) == "stop" and labels.targets_hit[0] == 0
    np.testing.assert_array_equal(labels.exit_atr[0], [-1.0, -1.0, -1.0])


def test_tp1_then_the_stop_and_tp2_then_the_stop() -> None:
    assert name(label([(102.0, 100.0, 101.0), (101.0, 98.0, 99.0), (100.0, 99.5, 100.0)])) == "tp1_stop"
    labels = label([(103.6, 100.0, 103.0), (101.0, 98.0, 99.0), (100.0, 99.5, 100.0)])
    assert name(labels) == "tp2_stop"
    np.testing.assert_array_equal(labels.exit_atr[0], [2.0, 3.5, -1.0])


def test_a_candle_touching_a_target_and_the_stop_counts_as_the_stop() -> None:
    assert name(label([(102.5, 98.9, 100.0), (110.0, 100.0, 109.0), (100.0, 100.0, 100.0)])) == "stop"
    # TP1 filled earlier; the later candle touches TP2 and the stop: TP2 does not count.
    assert name(label([(102.0, 100.0, 101.0), (103.6, 98.9, 100.0), (100.0, 100.0, 100.0)])) == "tp1_stop"


def test_a_gap_through_every_target_fills_all_three_in_one_candle() -> None:
    labels = label([(107.0, 106.5, 106.8), (100.0, 90.0, 90.0), (100.0, 100.0, 100.0)])
    assert name(labels) == "tp3" and labels.targets_hit[0] == 3
    np.testing.assert_array_equal(labels.exit_atr[0], [2.0, 3.5, 6.0])


def test_a_gap_through_the_stop_is_the_stop_whatever_the_candle_reaches_after() -> None:
    assert name(label([(97.0, 95.0, 96.0), (107.0, 96.0, 106.8), (100.0, 100.0, 100.0)])) == "stop"


def test_expiry_values_open_tranches_at_the_last_close_inside_the_life() -> None:
    # TP1 fills, then the life (3 candles) ends at close 101.2; candle 4 (outside the life) hits the stop.
    labels = label([(102.1, 100.0, 101.0), (101.5, 100.5, 101.0), (101.5, 100.5, 101.2), (100.0, 90.0, 90.0)])
    assert name(labels) == "expiry" and labels.targets_hit[0] == 1
    np.testing.assert_allclose(labels.exit_atr[0], [2.0, 1.2, 1.2])
    assert expiry_exit_atr(labels, np.array([0])) == pytest.approx([2.0, 1.2, 1.2])


def test_a_short_is_the_mirror_image() -> None:
    labels = label([(100.0, 97.9, 98.5), (100.0, 96.4, 97.0), (101.0, 96.5, 100.5)], long=False)
    assert name(labels) == "tp2_stop"  # the third candle reaches 101 (the SHORT's stop)
    labels = label([(100.5, 99.5, 99.7), (100.0, 99.0, 99.2), (100.2, 99.0, 99.4)], long=False)
    assert name(labels) == "expiry"
    np.testing.assert_allclose(labels.exit_atr[0], [0.6, 0.6, 0.6])


def test_rows_without_a_whole_life_of_candles_after_them_are_unlabelled() -> None:
    labels = label([(100.5, 99.5, 100.0)] * 5, life=3)
    np.testing.assert_array_equal(labels.outcome[-3:], [UNLABELLED] * 3)
    assert (labels.outcome[:-3] != UNLABELLED).all()
    assert np.isnan(labels.exit_atr[-3:]).all()
    # Even a row whose stop is already hit in the data: the end of data is the end of its labels.
    high, low, close, atr = path((100.0, 98.0, 98.5))
    assert outcome_labels(high, low, close, atr, long=True, life=3).outcome[0] == UNLABELLED


def test_unknown_atr_and_holes_in_the_candle_times_leave_rows_unlabelled() -> None:
    high, low, close, atr = path(extra=10)
    atr[2] = np.nan
    atr[3] = 0.0
    times = T0 + STEP_MS * np.arange(close.shape[0])
    times[6:] += STEP_MS  # an exchange halt between candles 5 and 6
    labels = outcome_labels(high, low, close, atr, long=True, life=3, open_time_ms=times, step_ms=STEP_MS)
    assert labels.outcome[2] == labels.outcome[3] == UNLABELLED
    assert (labels.outcome[[2, 3, 4, 5]] == UNLABELLED).all()  # 4 and 5: their life spans the halt
    assert labels.outcome[6] == OUTCOMES.index("expiry")


def _tracker(high: np.ndarray, low: np.ndarray, close: np.ndarray, atr: np.ndarray, t: int, long: bool, life: int):
    """The live tracker's outcome (core.outcome.resolve) of the bracket at candle t."""
    direction = 1.0 if long else -1.0
    entry = float(close[t])
    created = T0 + (t + 1) * STEP_MS + 5_000  # a few seconds after the signal candle closed
    setup = TradeSetup(side="LONG" if long else "SHORT", entry=entry,
                       take_profits=tuple(entry + direction * m * float(atr[t]) for m in (2.0, 3.5, 6.0)),
                       stop=entry - direction * 1.0 * float(atr[t]), weights=(1 / 3, 1 / 3, 1 / 3), costs_pct=0.32,
                       created_at_ms=created, expires_at_ms=created + life * STEP_MS, candle_ms=STEP_MS)
    candles = [Bar(T0 + i * STEP_MS, float(high[i]), float(low[i]), float(close[i])) for i in range(len(close))]
    return setup, resolve(setup, candles, as_of_ms=created + (life + 5) * STEP_MS)


@settings(max_examples=150, deadline=None)
@given(st.integers(0, 2**32 - 1), st.booleans(), st.integers(1, 12), st.floats(0.2, 3.0))
def test_labels_equal_the_trackers_rule_on_random_paths(seed: int, long: bool, life: int, vol: float) -> None:
    rng = np.random.default_rng(seed)
    n = life + 8
    close = 100.0 * np.exp(np.cumsum(rng.normal(0, vol / 100, n)))
    open_ = np.concatenate([[close[0]], close[:-1]]) * np.exp(rng.normal(0, vol / 300, n))  # price gaps
    high = np.maximum(open_, close) * (1 + rng.exponential(vol / 150, n))
    low = np.minimum(open_, close) * (1 - rng.exponential(vol / 150, n))
    atr = close * rng.uniform(0.3, 1.5, n) * vol / 100
    labels = outcome_labels(high, low, close, atr, long=long, life=life)
    for t in range(n):
        if t + life > n - 1:
            assert labels.outcome[t] == UNLABELLED
            continue
        setup, state = _tracker(high, low, close, atr, t, long, life)
        expected = {SignalStatus.STOPPED: OUTCOMES[state.targets_hit] if state.targets_hit < 3 else None,
                    SignalStatus.TP3_HIT: "tp3", SignalStatus.EXPIRED: "expiry"}[state.status]
        assert OUTCOMES[labels.outcome[t]] == expected, t
        assert labels.targets_hit[t] == state.targets_hit
        # Each tranche's exit distance, in ATR units in the trade's favour, is where the tracker closed it.
        exits = [setup.take_profits[k] if k < state.targets_hit else state.exit_price for k in range(3)]
        direction = 1.0 if long else -1.0
        np.testing.assert_allclose(labels.exit_atr[t], [(p - setup.entry) * direction / atr[t] for p in exits],
                                   rtol=0, atol=1e-9)


def test_labels_read_only_the_candles_of_the_life_after_t() -> None:
    rng = np.random.default_rng(7)
    n, life = 400, 96
    close = 100.0 * np.exp(np.cumsum(rng.normal(0, 0.004, n)))
    high, low = close * (1 + rng.exponential(0.002, n)), close * (1 - rng.exponential(0.002, n))
    atr = close * 0.006
    base = {side: outcome_labels(high, low, close, atr, long=side) for side in (True, False)}
    t = 150
    # Changing every candle after t + life changes nothing at t (or before).
    h2, l2, c2 = high.copy(), low.copy(), close.copy()
    h2[t + life + 1:] *= 3
    l2[t + life + 1:] /= 3
    c2[t + life + 1:] *= 2
    for side in (True, False):
        changed = outcome_labels(h2, l2, c2, atr, long=side)
        np.testing.assert_array_equal(changed.outcome[:t + 1], base[side].outcome[:t + 1])
        np.testing.assert_array_equal(changed.exit_atr[:t + 1], base[side].exit_atr[:t + 1])
    # Changing candles before t (their high/low and close, not close[t] and ATR[t]) changes nothing at t.
    h3, l3, c3 = high.copy(), low.copy(), close.copy()
    h3[:t] *= 5
    l3[:t] /= 5
    c3[:t] *= 1.7
    for side in (True, False):
        changed = outcome_labels(h3, l3, c3, atr, long=side)
        np.testing.assert_array_equal(changed.outcome[t:], base[side].outcome[t:])
    # And the life does decide it: a spike to TP3 in the first candle after t makes it tp3.
    h4 = high.copy()
    h4[t + 1] = close[t] + 7 * atr[t]
    l4 = low.copy()
    l4[t + 1] = close[t]
    assert OUTCOMES[outcome_labels(h4, l4, close, atr, long=True).outcome[t]] == "tp3"
