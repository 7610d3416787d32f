"""The edge search: EV arithmetic, out-of-sample outcome models, the gate replay and the verdict."""

from __future__ import annotations

from functools import cache

import numpy as np
import pytest

from traderai.contracts import Candles, Strategy
from traderai.market.csv import bundled_candles_path, load_candles_csv
from traderai.research.edge import edge_report, evidence_passes, gate, protection_locks
from traderai.research.search import (
    GEOMETRIES,
    PanelResult,
    SearchConfig,
    SignalTable,
    judge,
    run_panel,
    signals_of,
    summarize_config,
)
from traderai.research.stats import DAY_MS, BlockMean


def test_a_geometry_is_the_outcome_models_bracket_at_each_timeframe() -> None:
    seed = GEOMETRIES["seed"]
    assert seed.strategy() == Strategy()  # the seed geometry is the default Strategy's bracket
    assert seed.bracket("15m").to_dict() == {"sl_atr": 1.0, "tp_atr": [2.0, 3.5, 6.0], "life_candles": 96}
    assert GEOMETRIES["long_life"].bracket("4h").life_candles == 12
    assert SearchConfig().purge("15m") == 192  # the longest life of the grid (48 h)


def _entry(t: float, mean: float, n: int = 100) -> dict:
    return {"model": "outcome", "timeframe": "15m", "features": "base", "geometry": "seed", "n": n, "mean": mean,
            "se": abs(mean / t) if t else 1.0, "t": t}


def test_the_verdict_needs_a_positive_mean_and_the_bonferroni_threshold() -> None:
    config = SearchConfig()  # 36 configurations: one-sided threshold z(1 - 0.05/36) = 2.99
    assert config.configurations == 36
    winner, correction, verdict = judge([_entry(2.5, 0.7), _entry(-12.0, -0.3)], config)
    assert winner is not None and winner["t"] == 2.5
    assert correction is not None and not correction["survives"]
    assert verdict.startswith("no proven edge") and "2.99" in verdict
    winner, correction, verdict = judge([_entry(3.2, 0.7), _entry(-12.0, -0.3)], config)
    assert correction is not None and correction["survives"] and verdict.startswith("edge found")
    # Too few signals are not ranked at all.
    winner, _, verdict = judge([_entry(9.0, 2.0, n=10)], config)
    assert winner is None and "no proven edge" in verdict


def test_the_gate_bound_just_above_and_just_below_zero() -> None:
    assert evidence_passes(BlockMean(100, 50, 0.201, 0.1, 0.1))
    assert not evidence_passes(BlockMean(100, 50, 0.199, 0.1, 0.1))
    assert not evidence_passes(BlockMean(100, 1, 5.0, float("nan"), 0.1))
    assert not evidence_passes(None)


def _table(times_days: list[float], nets: list[float], evs: list[float], exit_offset: int = 4) -> SignalTable:
    n = len(nets)
    return SignalTable(symbol=np.array(["X/USDT"] * n, dtype=object),
                       open_time_ms=(np.array(times_days) * DAY_MS).astype(np.int64),
                       long=np.ones(n, dtype=bool), net_pct=np.array(nets), ev_pct=np.array(evs),
                       p_stop=np.full(n, 0.6), exit_offset=np.full(n, exit_offset, dtype=np.int64),
                       stopped=np.array(nets) < 0)


def test_the_gate_uses_only_evidence_of_earlier_closed_blocks() -> None:
    step = 900_000
    # Block 1 (days 0..10): strongly positive EV-passing signals; block 2 (days 10..20) the same.
    days = [*np.arange(0, 10, 0.5), *np.arange(10, 20, 0.5)]
    nets = [1.0 + 0.1 * (i % 3) for i in range(len(days))]
    table = _table(days, nets, [0.5] * len(days))
    tradeable, reasons = gate(table, [0, 10 * DAY_MS], step, DAY_MS, 0.0)
    first = np.array(days) < 10
    assert not tradeable[first].any()  # nothing earlier: unproven
    assert all("no_proven_edge" in r for r, f in zip(reasons, first, strict=True) if f)
    assert tradeable[~first].all()  # the first block's positive record proves the second
    # A negative EV is paper whatever the evidence, with its reason.
    evs = [0.5] * len(days)
    evs[-1] = -0.1
    tradeable, reasons = gate(_table(days, nets, evs), [0, 10 * DAY_MS], step, DAY_MS, 0.0)
    assert not tradeable[-1] and reasons[-1] == ["negative_expected_value"]
    # Losing evidence keeps the next block paper.
    losing = gate(_table(days, [-1.0 - 0.1 * (i % 3) for i in range(len(days))], [0.5] * len(days)),
                  [0, 10 * DAY_MS], step, DAY_MS, 0.0)[0]
    assert not losing.any()


@cache
def markets() -> tuple[Candles, ...]:
    return tuple(load_candles_csv(bundled_candles_path(s), s).tail(6000) for s in ("BTC/USDT", "SOL/USDT"))


SMALL = SearchConfig(timeframes=("15m",), feature_sets=("base",), geometries=("seed",), folds=2)


@cache
def panel() -> PanelResult:
    return run_panel(markets(), "15m", "base", SMALL, Strategy())


def test_outcome_probabilities_are_out_of_sample_and_sum_to_one() -> None:
    result = panel()
    tested = np.isfinite(result.direction)
    assert tested.sum() > 1000 and not tested.all()
    for side in ("LONG", "SHORT"):
        record = result.sides["seed"][side]
        assert np.isfinite(record.ev_pct[tested]).all() and np.isnan(record.ev_pct[~tested]).all()
        np.testing.assert_allclose(record.probabilities[tested].sum(axis=1), 1.0, atol=1e-9)
        assert (record.probabilities[tested] >= 0).all()
        assert len(record.expiry_exit) == SMALL.folds


def test_the_future_of_a_test_block_never_reaches_its_models() -> None:
    # Given every candle after the first test block scaled (prices and hence labels and features change)
    result = panel()
    cut = result.fold_starts_ms[1]
    changed = []
    for c in markets():
        scale = np.where(c.open_time_ms >= cut, np.linspace(1.0, 1.6, len(c)), 1.0)
        changed.append(Candles(c.symbol, c.timeframe, c.open_time_ms, c.open * scale, c.high * scale,
                               c.low * scale, c.close * scale, c.volume))
    other = run_panel(changed, "15m", "base", SMALL, Strategy())
    # Then the first block's predictions are the same (its models saw nothing after it), the second's differ
    purge = SMALL.purge("15m") * 900_000
    first = np.isfinite(result.direction) & (result.rows.open_time_ms < cut - purge)
    np.testing.assert_array_equal(result.direction[first], other.direction[first])
    for side in ("LONG", "SHORT"):
        np.testing.assert_array_equal(result.sides["seed"][side].ev_pct[first], other.sides["seed"][side].ev_pct[first])
    second = result.rows.open_time_ms >= cut
    assert not np.allclose(result.sides["seed"]["LONG"].ev_pct[second], other.sides["seed"]["LONG"].ev_pct[second])


def test_signals_and_the_edge_report() -> None:
    result = panel()
    # On 6,000 candles the calibrated direction probability stays near 0.5 (its isotonic steps rest on
    # >= 1,000 rows), so the seed's 0.55 floor passes nothing: open the rules to get signals to score.
    assert signals_of(result, "seed", Strategy()).net_pct.shape[0] == 0
    table = signals_of(result, "seed", Strategy(min_confidence=0.5, min_net_profit_pct=0.0))
    assert table.net_pct.shape[0] > 20 and np.isfinite(table.ev_pct).all()
    report = edge_report(result, "seed", table, Strategy())
    for market in report["markets"].values():
        assert market["tradeable"]["n"] + market["paper"]["n"] == market["calibration"]["n"]
        assert sum(market["paper_reasons"].values()) >= market["paper"]["n"]  # every paper signal says why
        assert market["while_locked"]["n"] + market["while_unlocked"]["n"] == market["calibration"]["n"]
    assert report["protections"]["simulated"] and report["protections"]["settings"]["stoploss_guard_stops"] == 4


def test_protections_replayed_lock_after_a_run_of_stops_and_release_after_the_cool_down() -> None:
    # Given four losing stop-outs in the first 6 hours (each stopped in the candle after its signal
    # candle: exit_offset 1), then signals at 12 h (inside the 24 h cool-down) and 40 h (after it)
    hours = [0.0, 1.5, 3.0, 4.5, 12.0, 40.0]
    table = _table([h / 24 for h in hours], [-1.3, -1.3, -1.3, -1.3, 0.5, 0.5], [0.1] * 6, exit_offset=1)
    locked, locks = protection_locks(table, 900_000, Strategy().protections)
    # Then the signal decided after the 4th stop closed is paper with protection_stoploss_guard ...
    assert locked[:4] == [[], [], [], []]
    assert locked[4] == ["protection_stoploss_guard"]
    # ... and the lock released on its own a day after the 4th stop
    assert locked[5] == []
    assert len(locks) == 1 and "4 stops within 24 h" in locks[0]["message"]


def test_a_configurations_result_counts_its_traded_signals_by_its_own_rule() -> None:
    result = panel()
    opened = Strategy(min_confidence=0.5, min_net_profit_pct=0.0)
    table = signals_of(result, "seed", opened)
    direction = summarize_config(result, "seed", "direction", table, SMALL)
    outcome = summarize_config(result, "seed", "outcome", table, SMALL)
    # direction trades every seed signal; outcome only those whose EV passes the minimum
    assert direction["n"] == direction["seed_signals"] == table.net_pct.shape[0]
    assert outcome["n"] == int((table.ev_pct >= SMALL.min_ev_pct).sum())
    assert sum(m["n"] for m in direction["per_market"].values()) == direction["n"]
    assert direction["mean"] == pytest.approx(float(table.net_pct.mean()))
    assert set(outcome["brier_skill"]) == {"BTC/USDT", "SOL/USDT"}
    assert outcome["ev_calibration"]["all"]["n"] == table.net_pct.shape[0]
