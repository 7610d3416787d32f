"""Expected value of the bracket (core/expected_value.py): hand computations, bounds, the seed's best case."""

from __future__ import annotations

import itertools
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from traderai.contracts import OUTCOMES, Side, Strategy
from traderai.core.expected_value import (
    bracket_mismatch,
    edge_verdict,
    expected_r,
    expected_value_pct,
    outcome_payoffs,
    probabilities_problem,
)
from traderai.core.signals import compute_levels


def test_payoffs_and_ev_equal_a_hand_computation() -> None:
    # entry 100, ATR 2: SL 1 ATR = 2 %, TPs 2/3.5/6 ATR = 4/7/12 %, weights 0.5/0.3/0.2, costs 0.32 %
    payoffs = outcome_payoffs((4.0, 7.0, 12.0), 2.0, (0.5, 0.3, 0.2), (1.0, 0.5, -0.25), atr_pct=2.0)
    assert payoffs["stop"] == pytest.approx(-2.0)
    assert payoffs["tp1_stop"] == pytest.approx(0.5 * 4 - 0.5 * 2)  # 1.0
    assert payoffs["tp2_stop"] == pytest.approx(0.5 * 4 + 0.3 * 7 - 0.2 * 2)  # 3.7
    assert payoffs["tp3"] == pytest.approx(0.5 * 4 + 0.3 * 7 + 0.2 * 12)  # 6.5
    assert payoffs["expiry"] == pytest.approx((0.5 * 1.0 + 0.3 * 0.5 - 0.2 * 0.25) * 2.0)  # 1.2
    probabilities = {"stop": 0.61, "tp1_stop": 0.12, "tp2_stop": 0.05, "tp3": 0.04, "expiry": 0.18}
    # 0.61*-2 + 0.12*1 + 0.05*3.7 + 0.04*6.5 + 0.18*1.2 - 0.32 = -1.22+0.12+0.185+0.26+0.216-0.32 = -0.759
    ev = expected_value_pct(probabilities, payoffs, 0.32)
    assert ev == pytest.approx(-0.759)
    assert expected_r(ev, 2.0, 0.32) == pytest.approx(-0.759 / 2.32)


def _levels(entry: float, atr: float, strategy: Strategy):
    return compute_levels(Side.LONG, entry, atr, strategy)


weights = st.tuples(*(st.floats(0.0, 1.0) for _ in range(3))).filter(lambda w: sum(w) > 0.05).map(
    lambda w: tuple(x / sum(w) for x in w))
distributions = st.lists(st.floats(0.0, 1.0), min_size=5, max_size=5).filter(lambda p: sum(p) > 0.01).map(
    lambda p: dict(zip(OUTCOMES, (x / math.fsum(p) for x in p), strict=True)))
geometry = st.fixed_dictionaries({
    "entry": st.floats(1e-3, 1e6), "atr_frac": st.floats(1e-4, 0.05), "sl": st.floats(0.2, 5.0),
    "tp1": st.floats(0.2, 5.0), "gaps": st.tuples(st.floats(0.0, 5.0), st.floats(0.0, 5.0)),
    "fee": st.floats(0.0, 0.2), "exits": st.tuples(*(st.floats(-2.0, 8.0) for _ in range(3))),
})


def _case(g: dict, w: tuple[float, float, float]):
    tps = (g["tp1"], g["tp1"] + g["gaps"][0], g["tp1"] + g["gaps"][0] + g["gaps"][1])
    strategy = Strategy(sl_atr_multiplier=g["sl"], tp_atr_multipliers=tps, tp_weights=w, taker_fee_pct=g["fee"])
    atr = g["entry"] * g["atr_frac"]
    levels = _levels(g["entry"], atr, strategy)
    payoffs = outcome_payoffs(levels.tp_pcts, levels.sl_pct, w, g["exits"], atr / g["entry"] * 100)
    return strategy, levels, payoffs


@given(geometry, weights, distributions)
def test_ev_of_a_distribution_lies_between_the_worst_and_best_payoff_minus_costs(g, w, p) -> None:
    _, levels, payoffs = _case(g, w)
    ev = expected_value_pct(p, payoffs, levels.costs_pct)
    slack = 1e-9 * max(1.0, *(abs(v) for v in payoffs.values()))
    assert min(payoffs.values()) - levels.costs_pct - slack <= ev <= max(payoffs.values()) - levels.costs_pct + slack
    assert probabilities_problem(p) is None  # normalised: a distribution within the tolerance


@given(geometry, weights)
def test_all_tp3_is_the_seeds_best_case_and_all_stop_loses_the_stop_and_costs(g, w) -> None:
    _, levels, payoffs = _case(g, w)
    certain = {o: 0.0 for o in OUTCOMES}
    assert expected_value_pct(certain | {"tp3": 1.0}, payoffs, levels.costs_pct) == pytest.approx(
        levels.expected_net_profit_pct, rel=1e-12, abs=1e-12)
    assert expected_value_pct(certain | {"stop": 1.0}, payoffs, levels.costs_pct) == pytest.approx(
        -levels.sl_pct - levels.costs_pct, rel=1e-12, abs=1e-12)
    # the ordering of the bracket: each further target can only add
    ordered = [payoffs[o] for o in ("stop", "tp1_stop", "tp2_stop", "tp3")]
    slack = 1e-12 * max(1.0, *(abs(v) for v in ordered))  # weights summing to 1 within float rounding
    assert all(a <= b + slack for a, b in itertools.pairwise(ordered))


@pytest.mark.parametrize(("probabilities", "problem"), [
    ({"stop": 0.5, "tp1_stop": 0.1, "tp2_stop": 0.1, "tp3": 0.1, "expiry": 0.2}, None),
    ({"stop": math.nan, "tp1_stop": 0.1, "tp2_stop": 0.1, "tp3": 0.1, "expiry": 0.2}, "not finite and >= 0"),
    ({"stop": -0.1, "tp1_stop": 0.3, "tp2_stop": 0.2, "tp3": 0.4, "expiry": 0.2}, "not finite and >= 0"),
    ({"stop": 0.5, "tp1_stop": 0.1, "tp2_stop": 0.1, "tp3": 0.1, "expiry": 0.2 + 2e-9}, "sum to"),
    ({"stop": 0.5, "tp1_stop": 0.1, "tp2_stop": 0.1, "tp3": 0.3}, "exactly"),
])
def test_probabilities_must_be_a_distribution(probabilities: dict[str, float], problem: str | None) -> None:
    found = probabilities_problem(probabilities)
    assert found is None if problem is None else problem in found


def test_a_sum_within_the_tolerance_is_a_distribution() -> None:
    assert probabilities_problem({"stop": 0.5, "tp1_stop": 0.1, "tp2_stop": 0.1, "tp3": 0.1,
                                  "expiry": 0.2 + 5e-10}) is None


def test_bracket_mismatch_names_what_differs() -> None:
    same = {"sl_atr": 1.0, "tp_atr": [2.0, 3.5, 6.0], "life_candles": 96}
    assert bracket_mismatch(same, 1.0, (2.0, 3.5, 6.0), 96.0) is None
    assert "SL 1.5 ATR" in bracket_mismatch(same | {"sl_atr": 1.5}, 1.0, (2.0, 3.5, 6.0), 96.0)
    assert "TP" in bracket_mismatch(same, 1.0, (2.0, 3.0, 6.0), 96.0)
    assert "life 96 candles (signal 24)" in bracket_mismatch(same, 1.0, (2.0, 3.5, 6.0), 24.0)
    assert "names no bracket" in bracket_mismatch(None, 1.0, (2.0, 3.5, 6.0), 96.0)


@pytest.mark.parametrize(("evidence", "proven"), [
    ({"n": 812, "mean_net_pct": 0.1001, "se_pct": 0.05}, True),  # lower bound +0.0001: just above
    ({"n": 812, "mean_net_pct": 0.0999, "se_pct": 0.05}, False),  # lower bound -0.0001: just below
    ({"n": 812, "mean_net_pct": 0.10, "se_pct": 0.05}, False),  # exactly 0 is not above zero
    ({"n": 812, "mean_net_pct": -0.28, "se_pct": 0.05}, False),
    (None, False), ({}, False),
    ({"n": 1, "mean_net_pct": 5.0, "se_pct": 0.0}, False),  # one signal has no standard error
    ({"n": 812, "mean_net_pct": math.nan, "se_pct": 0.05}, False),
    ({"n": 812, "mean_net_pct": 0.5}, False),
])
def test_edge_gate_at_its_bound(evidence: dict | None, proven: bool) -> None:
    verdict = edge_verdict(evidence, "LONG")
    assert verdict.proven is proven
    if proven:
        assert verdict.lower_bound_pct is not None and verdict.lower_bound_pct > 0
