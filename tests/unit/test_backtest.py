"""The backtest plays signals out by the outcome rule, accepts exactly what decide() accepts, never overlaps."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from functools import cache

import numpy as np
import pytest

from traderai.contracts import Prediction, Strategy
from traderai.core.signals import decide
from traderai.market.csv import bundled_candles_path, load_candles_csv
from traderai.research.backtest import (
    accept_mask,
    backtest_market,
    life_candles,
    play_out,
    report_tables,
    without_overlaps,
)
from traderai.research.walkforward import MarketFrame, prepare_market

SEED = Strategy()
COSTS = SEED.costs_pct  # 0.32


def bars(*candles: tuple[float, float, float]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(high, low, close) arrays: candle 0 is the signal candle (entry = its close 100), then `candles`."""
    rows = [(100.0, 100.0, 100.0), *candles]
    high, low, close = (np.array([r[i] for r in rows]) for i in range(3))
    return high, low, close


def play(candles: list[tuple[float, float, float]], long: bool = True, horizon: int = 96):
    high, low, close = bars(*candles)
    return play_out(high, low, close, np.array([0]), np.array([long]), np.array([1.0]), SEED, horizon)


# Entry 100, ATR 1: LONG TPs 102 / 103.5 / 106, SL 99; SHORT TPs 98 / 96.5 / 94, SL 101.

def test_tp1_then_stop_exits_a_third_at_tp1_and_the_rest_at_the_unmoved_stop() -> None:
    out = play([(102.5, 99.5, 102.0), (101.0, 98.5, 99.0)])
    assert out.targets_hit[0] == 1 and out.stopped[0] and not out.expired[0] and out.exit_offset[0] == 2
    assert out.gross_pct[0] == pytest.approx(2.0 / 3 - 2.0 / 3)
    assert out.net_pct[0] == pytest.approx(-COSTS)


def test_a_candle_touching_tp_and_stop_counts_the_stop_first() -> None:
    out = play([(102.5, 98.9, 100.0)])
    assert out.targets_hit[0] == 0 and out.stopped[0]
    assert out.net_pct[0] == pytest.approx(-1.0 - COSTS)


def test_all_three_targets_in_one_candle_close_the_trade_at_the_rules_expected_profit() -> None:
    out = play([(107.0, 99.5, 106.5)])
    assert out.targets_hit[0] == 3 and not out.stopped[0] and out.exit_offset[0] == 1
    assert out.net_pct[0] == pytest.approx(out.expected_net_pct[0])
    assert out.expected_net_pct[0] == pytest.approx((2 + 3.5 + 6) / 3 - COSTS)


def test_expiry_closes_the_rest_at_the_last_close_inside_the_life() -> None:
    out = play([(102.2, 99.5, 101.0), (101.0, 99.5, 100.5), (101.0, 100.0, 100.7), (110.0, 90.0, 95.0)],
               horizon=3)
    assert out.targets_hit[0] == 1 and out.expired[0] and out.exit_offset[0] == 3
    assert out.gross_pct[0] == pytest.approx(2.0 / 3 + 2.0 / 3 * 0.7)


def test_a_short_is_the_mirror_image() -> None:
    out = play([(100.5, 97.9, 98.0), (101.2, 99.0, 101.0)], long=False)
    assert out.targets_hit[0] == 1 and out.stopped[0]
    assert out.net_pct[0] == pytest.approx(2.0 / 3 - 2.0 / 3 - COSTS)


def test_costs_are_always_paid_even_when_nothing_moves() -> None:
    out = play([(100.1, 99.9, 100.0)] * 4, horizon=4)
    assert out.expired[0] and out.net_pct[0] == pytest.approx(-COSTS)


def test_a_signal_is_refused_while_one_of_its_side_is_open() -> None:
    rows = np.array([10, 11, 12, 15, 16, 30])
    long = np.array([True, False, True, True, False, True])
    exit_offset = np.array([5, 3, 1, 4, 1, 1])
    # LONG @10 open until 15: refuse @12, take @15; SHORT @11 open until 14: take @16.
    np.testing.assert_array_equal(without_overlaps(rows, long, exit_offset), [True, True, False, True, True, True])


def test_life_is_96_candles_of_15m_for_the_default_24h() -> None:
    assert life_candles(SEED, "15m") == 96


@cache
def sol() -> MarketFrame:
    return prepare_market(load_candles_csv(bundled_candles_path("SOL/USDT"), "SOL/USDT").tail(3000))


def _prediction(price: float, atr: float, p: float, volume: float) -> Prediction:
    return Prediction(batch_id="b", model_id="m", exchange="binance", symbol="SOL/USDT", timeframe="15m",
                      candle_time="2025-04-29T11:45:00Z", predicted_at="2025-04-29T12:00:04Z", price=price, atr=atr,
                      probability=p, confidence=max(p, 1 - p), side="long" if p >= 0.5 else "short", horizon=4,
                      quote_volume_24h=volume)


@pytest.mark.parametrize("strategy", [SEED, Strategy(min_net_profit_pct=0.5, min_quote_volume_usd=5e7)])
def test_the_vectorised_filters_accept_exactly_what_decide_accepts(strategy: Strategy) -> None:
    # Given real candles, their ATR and volume, and probabilities spread over the whole range
    frame = sol()
    rows = np.arange(300, 3000)
    p = np.random.default_rng(5).uniform(0.2, 0.8, rows.shape[0])
    p[::97] = 0.5  # the LONG/SHORT boundary
    price, atr, volume = frame.candles.close[rows], frame.atr[rows], frame.quote_volume_24h[rows]
    # When both decide
    vectorised = accept_mask(p, price, atr, volume, strategy)
    one_by_one = [decide(_prediction(float(c), float(a), float(q), float(v)), strategy,
                         decided_at=datetime(2025, 4, 29, 12, tzinfo=UTC))[0].accepted
                  for c, a, q, v in zip(price, atr, p, volume, strict=True)]
    # Then they agree on every row, and both accept and reject some
    np.testing.assert_array_equal(vectorised, one_by_one)
    assert 0 < vectorised.sum() < vectorised.shape[0]


def test_the_vectorised_liquidation_filter_is_per_side_like_decide() -> None:
    # A stop 4.49% away: past a SHORT's liquidation price at 20x, inside a LONG's
    p = np.array([0.7, 0.3])
    vectorised = accept_mask(p, np.full(2, 100.0), np.full(2, 4.49), np.full(2, 2e9), SEED)
    one_by_one = [decide(_prediction(100.0, 4.49, float(q), 2e9), SEED,
                         decided_at=datetime(2025, 4, 29, 12, tzinfo=UTC))[0].accepted for q in p]
    np.testing.assert_array_equal(vectorised, one_by_one)
    np.testing.assert_array_equal(vectorised, [True, False])


def test_the_vectorised_playout_equals_the_live_trackers_rule_signal_by_signal() -> None:
    outcome = pytest.importorskip("traderai.core.outcome")
    frame = sol()
    c = frame.candles
    horizon = life_candles(SEED, "15m")
    rng = np.random.default_rng(7)
    rows = np.sort(rng.choice(np.arange(300, len(c) - horizon - 1), 150, replace=False))
    long = rng.random(rows.shape[0]) < 0.5
    atr = frame.atr[rows] * rng.uniform(0.3, 1.5, rows.shape[0])  # vary the distances: more TP and SL hits
    out = play_out(c.high, c.low, c.close, rows, long, atr, SEED, horizon)
    candle_ms = 900_000
    created_after_close_ms = 5_000  # the signal step stores created_at a few seconds after the tick, as live
    for i, row in enumerate(rows.tolist()):
        entry, direction = float(c.close[row]), 1.0 if long[i] else -1.0
        setup = outcome.TradeSetup(
            side="LONG" if long[i] else "SHORT", entry=entry,
            take_profits=tuple(entry + direction * m * float(atr[i]) for m in SEED.tp_atr_multipliers),
            stop=entry - direction * SEED.sl_atr_multiplier * float(atr[i]), weights=SEED.tp_weights,
            costs_pct=COSTS, created_at_ms=int(c.open_time_ms[row]) + candle_ms + created_after_close_ms,
            expires_at_ms=(int(c.open_time_ms[row]) + candle_ms + created_after_close_ms
                           + int(SEED.signal_ttl_hours * 3600_000)),
            candle_ms=candle_ms)
        window = range(row + 1, row + horizon + 2)
        state = outcome.resolve(setup, [outcome.Bar(int(c.open_time_ms[j]), float(c.high[j]), float(c.low[j]),
                                                    float(c.close[j])) for j in window],
                                as_of_ms=setup.expires_at_ms)
        assert state.targets_hit == out.targets_hit[i], row
        assert state.realised_net_pct == pytest.approx(out.net_pct[i], abs=1e-9), row
    assert len({int(t) for t in out.targets_hit}) >= 3  # the sample exercises several outcomes


def test_backtest_of_a_market_trades_only_out_of_sample_rows_without_overlap() -> None:
    # Given probabilities only for the second half of the candles (as a walk-forward leaves them)
    frame = sol()
    n = len(frame.candles)
    p = np.full(n, np.nan)
    p[n // 2:] = np.random.default_rng(9).uniform(0.3, 0.7, n - n // 2)
    # When the market is backtested
    trades, counts = backtest_market(frame, p, SEED)
    # Then every signal sits where a probability exists, and no two of a side are open at once
    assert len(trades) == counts["signals"] > 0
    index = np.searchsorted(frame.candles.open_time_ms, trades.open_time_ms)
    assert (index >= n // 2).all()
    for side in (True, False):
        mine = trades.long == side
        starts, ends = index[mine], index[mine] + trades.outcomes.exit_offset[mine]
        assert (starts[1:] >= ends[:-1]).all()
    tables = report_tables(trades, SEED)
    assert tables["overall"]["signals"] == len(trades)
    assert sum(t["signals"] for t in tables["by_confidence"].values()) == len(trades)
    assert math.isclose(tables["overall"]["total_net_usd"], trades.outcomes.net_pct.sum() * 10, rel_tol=1e-12)
