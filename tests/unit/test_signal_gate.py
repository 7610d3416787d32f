"""The signal step's use of the outcome model (issue 12): expected value, the edge gate, paper signals."""

from __future__ import annotations

import dataclasses
import math
from datetime import UTC, datetime

import pytest

from traderai.contracts import OUTCOMES, PaperReason, Prediction, RejectReason, Strategy
from traderai.core.protections import Lock
from traderai.core.signals import decide

NOW = datetime(2025, 4, 29, 12, 0, 5, tzinfo=UTC)
SEED = Strategy()
BRACKET = {"sl_atr": 1.0, "tp_atr": [2.0, 3.5, 6.0], "life_candles": 96}  # the seed's, 24 h of 15m candles
LONG = {"stop": 0.40, "tp1_stop": 0.15, "tp2_stop": 0.10, "tp3": 0.15, "expiry": 0.20}
EXITS = [0.5, 0.2, -0.1]
PROVEN = {"n": 900, "mean_net_pct": 0.30, "se_pct": 0.05}  # lower bound +0.20


def prediction(**changes: object) -> Prediction:
    """Entry 100, ATR 1: SL 1 %, TPs 2 / 3.5 / 6 %, equal weights, costs 0.32 % (hand-computable)."""
    base: dict = dict(batch_id="b", model_id="m", exchange="binance", symbol="BTC/USDT", timeframe="15m",
                      candle_time="2025-04-29T11:45:00Z", predicted_at="2025-04-29T12:00:04Z", price=100.0,
                      atr=1.0, probability=0.65, confidence=0.65, side="long", horizon=4, quote_volume_24h=2e9,
                      amount_step=0.001, price_step=0.01,
                      outcome_probabilities={"LONG": dict(LONG), "SHORT": dict(LONG)},
                      expiry_exit_atr={"LONG": tuple(EXITS), "SHORT": tuple(EXITS)}, bracket=dict(BRACKET),
                      edge_evidence={"LONG": dict(PROVEN)})
    base.update(changes)
    return Prediction(**base)


# EV by hand: payoffs stop -1; tp1_stop 2/3 - 2/3 = 0; tp2_stop 2/3 + 3.5/3 - 1/3 = 1.5; tp3 11.5/3;
# expiry (0.5 + 0.2 - 0.1)/3 * 1 = 0.2.  EV = -0.40 + 0 + 0.15 + 0.575 + 0.04 - 0.32 = 0.045
HAND_EV = -0.40 * 1 + 0.15 * 0 + 0.10 * 1.5 + 0.15 * 11.5 / 3 + 0.20 * 0.2 - 0.32


def test_expected_value_on_the_decision_and_signal_equals_the_hand_computation() -> None:
    decision, signal = decide(prediction(), SEED, decided_at=NOW)
    assert signal is not None and decision.accepted
    assert decision.expected_value_pct == pytest.approx(HAND_EV)
    assert signal.expected_value_pct == pytest.approx(HAND_EV, abs=1e-6)
    assert signal.expected_r == pytest.approx(HAND_EV / (1.0 + 0.32), abs=1e-6)
    assert signal.outcome_probabilities == LONG
    assert signal.tradeable is True and signal.paper_reasons == () and decision.paper_reasons == ()
    # the message leads with the expected value and P(stop), the best case labelled as one
    assert f"expected value {HAND_EV:+.2f}% (P(stop) 40%)" in decision.message
    assert f"best case {signal.expected_net_profit_pct:+.2f}% if every target fills" in decision.message


@pytest.mark.parametrize(("offset", "tradeable"), [(-1e-6, True), (1e-6, False)])
def test_min_expected_value_just_above_and_below_the_signals_ev(offset: float, tradeable: bool) -> None:
    strategy = Strategy(min_expected_value_pct=HAND_EV + offset)
    decision, signal = decide(prediction(), strategy, decided_at=NOW)
    assert signal is not None and signal.tradeable is tradeable
    assert (decision.paper_reasons == ("negative_expected_value",)) is not tradeable


@pytest.mark.parametrize(("mean", "tradeable"), [(0.1001, True), (0.0999, False), (0.10, False)])
def test_edge_gate_just_above_and_below_its_bound(mean: float, tradeable: bool) -> None:
    evidence = {"LONG": {"n": 812, "mean_net_pct": mean, "se_pct": 0.05}}  # bound = mean - 0.10
    decision, signal = decide(prediction(edge_evidence=evidence), SEED, decided_at=NOW)
    assert signal is not None and signal.tradeable is tradeable
    assert signal.paper_reasons == (() if tradeable else ("no_proven_edge",))
    if not tradeable:
        assert "PAPER" in decision.message and "no_proven_edge (out-of-sample LONG" in decision.message


@pytest.mark.parametrize("evidence", [None, {}, {"SHORT": PROVEN}])
def test_missing_evidence_is_unproven_never_proven(evidence: dict | None) -> None:
    decision, signal = decide(prediction(edge_evidence=evidence), SEED, decided_at=NOW)
    assert signal is not None and not signal.tradeable
    assert signal.paper_reasons == ("no_proven_edge",)
    assert "no out-of-sample evidence for LONG" in decision.message


def test_malformed_evidence_from_the_wire_is_unproven() -> None:
    record = prediction().to_dict() | {"edge_evidence": {"LONG": {"n": "many", "mean_net_pct": 9, "se_pct": 0}}}
    _, signal = decide(Prediction.from_dict(record), SEED, decided_at=NOW)
    assert signal is not None and signal.paper_reasons == ("no_proven_edge",)


@pytest.mark.parametrize(("changes", "named"), [
    ({"bracket": BRACKET | {"sl_atr": 1.5}}, "SL 1.5 ATR (signal 1)"),
    ({"bracket": BRACKET | {"life_candles": 16}}, "life 16 candles (signal 96)"),
    ({"bracket": None}, "names no bracket"),
    ({"outcome_probabilities": None}, "no outcome probabilities for LONG"),
    ({"expiry_exit_atr": None}, "no expiry exits for LONG"),
])
def test_no_expected_value_means_paper_with_the_reason_named(changes: dict, named: str) -> None:
    decision, signal = decide(prediction(**changes), SEED, decided_at=NOW)
    assert signal is not None and not signal.tradeable
    assert signal.expected_value_pct is None and signal.outcome_probabilities is None
    assert signal.paper_reasons == ("no_proven_edge",)
    assert named in decision.message and "expected value unknown" in decision.message


def test_a_strategy_bracket_differing_from_the_models_gives_no_ev() -> None:
    _, signal = decide(prediction(), Strategy(tp_atr_multipliers=(2.0, 3.0, 6.0), min_net_profit_pct=1.0),
                       decided_at=NOW)
    assert signal is not None and signal.expected_value_pct is None and not signal.tradeable


@pytest.mark.parametrize("outcomes", [
    LONG | {"stop": math.nan},
    LONG | {"stop": -0.05, "tp1_stop": 0.20},
    LONG | {"expiry": 0.20 + 2e-9},
    LONG | {"expiry": 0.10},
])
def test_invalid_outcome_probabilities_are_an_invalid_prediction(outcomes: dict) -> None:
    decision, signal = decide(prediction(outcome_probabilities={"LONG": LONG, "SHORT": outcomes}), SEED,
                              decided_at=NOW)
    assert signal is None and not decision.accepted
    assert decision.reason == RejectReason.INVALID_PREDICTION.value
    assert "SHORT outcome probabilities" in decision.message
    assert decision.to_dict()["expected_value_pct"] is None


def test_non_finite_expiry_exits_are_an_invalid_prediction() -> None:
    decision, signal = decide(prediction(expiry_exit_atr={"LONG": (0.1, math.inf, 0.0)}), SEED, decided_at=NOW)
    assert signal is None and decision.reason == "invalid_prediction"


def test_a_protection_lock_makes_a_signal_paper_with_its_numbers() -> None:
    lock = Lock("BTC/USDT", PaperReason.PROTECTION_STOPLOSS_GUARD.value, "2025-04-29T10:00:00Z",
                "2025-04-30T10:00:00Z", "stoploss_guard: 4 stops within 24 h (limit 4); locked 24 h until ...")
    decision, signal = decide(prediction(), SEED, decided_at=NOW, locks=(lock,))
    assert signal is not None and not signal.tradeable
    assert signal.paper_reasons == ("protection_stoploss_guard",)
    assert "4 stops within 24 h" in decision.message


def test_warn_keeps_signals_tradeable_and_logs_the_reasons() -> None:
    decision, signal = decide(prediction(edge_evidence=None), Strategy(edge_gate="warn"), decided_at=NOW)
    assert signal is not None and signal.tradeable is True and signal.paper_reasons == ()
    assert decision.paper_reasons == ("no_proven_edge",) and "would be paper" in decision.message
    assert signal.expected_value_pct == pytest.approx(HAND_EV, abs=1e-6)


def test_off_reproduces_the_seeds_decisions_exactly() -> None:
    seed_fields = [f.name for f in dataclasses.fields(type(decide(prediction(), SEED, decided_at=NOW)[1]))
                   if f.name not in ("expected_value_pct", "expected_r", "outcome_probabilities", "tradeable",
                                     "paper_reasons")]
    off = Strategy(edge_gate="off")
    cases = [prediction(), prediction(edge_evidence=None), prediction(probability=0.3),
             prediction(outcome_probabilities={"LONG": LONG | {"stop": math.nan}}),  # the seed never read these
             prediction(atr=0.05), prediction(probability=0.52)]
    for case in cases:
        decision, signal = decide(case, off, decided_at=NOW)
        enforced, enforced_signal = decide(case, SEED, decided_at=NOW)
        if case.outcome_probabilities and math.isnan(case.outcome_probabilities["LONG"]["stop"]):
            assert enforced.reason == "invalid_prediction" and decision.accepted
        else:
            assert (decision.accepted, decision.reasons) == (enforced.accepted, enforced.reasons)
        if signal is not None:
            assert signal.tradeable is True and signal.paper_reasons == () and signal.expected_value_pct is None
            if enforced_signal is not None:
                assert [getattr(signal, f) for f in seed_fields] == [getattr(enforced_signal, f) for f in seed_fields]


def test_the_side_stays_the_seeds_and_a_short_uses_its_own_probabilities() -> None:
    short = dict(zip(OUTCOMES, (0.9, 0.05, 0.0, 0.0, 0.05), strict=True))
    _, signal = decide(prediction(probability=0.3, outcome_probabilities={"LONG": LONG, "SHORT": short},
                                  edge_evidence={"SHORT": PROVEN}), SEED, decided_at=NOW)
    assert signal is not None and signal.side == "SHORT"
    assert signal.outcome_probabilities == short
    assert signal.paper_reasons == ("negative_expected_value",)
    assert signal.expected_value_pct is not None and signal.expected_value_pct < 0
