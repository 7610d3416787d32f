"""The issue-12 fields of the contract: outcome probabilities, expiry exits, bracket, edge evidence.

Shapes are the contract's (a malformed one is a ContractError naming the field); values that are data
(NaN or negative probabilities, sums off 1) pass through for the signal step to reject and log.
"""

from __future__ import annotations

import json
import math
from typing import Any

import pytest

from traderai.contracts import OUTCOMES, ContractError, Decision, PaperReason, Prediction, Signal

LONG = {"stop": 0.61, "tp1_stop": 0.12, "tp2_stop": 0.05, "tp3": 0.04, "expiry": 0.18}
SHORT = {"stop": 0.58, "tp1_stop": 0.13, "tp2_stop": 0.06, "tp3": 0.05, "expiry": 0.18}


def record(**changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "batch_id": "b", "model_id": "m", "exchange": "binance", "symbol": "BTC/USDT", "timeframe": "15m",
        "candle_time": "2025-04-29T11:45:00Z", "predicted_at": "2025-04-29T12:00:04Z", "price": 62_800.0,
        "atr": 700.0, "probability": 0.65, "horizon": 4,
        "outcome_probabilities": {"LONG": LONG, "SHORT": SHORT},
        "expiry_exit_atr": {"LONG": [0.4, 0.1, -0.2], "SHORT": [0.3, 0.0, -0.1]},
        "bracket": {"sl_atr": 1.0, "tp_atr": [2.0, 3.5, 6.0], "life_candles": 96},
        "edge_evidence": {"LONG": {"n": 812, "mean_net_pct": -0.28, "se_pct": 0.05, "ev_buckets": [1, 2]},
                          "SHORT": {"n": 790, "mean_net_pct": 0.21, "se_pct": 0.06}},
    }
    base.update(changes)
    return base


def test_the_new_fields_parse_and_round_trip_through_json() -> None:
    parsed = Prediction.from_dict(record())
    assert parsed.outcome_probabilities == {"LONG": LONG, "SHORT": SHORT}
    assert parsed.expiry_exit_atr == {"LONG": (0.4, 0.1, -0.2), "SHORT": (0.3, 0.0, -0.1)}
    assert parsed.bracket == {"sl_atr": 1.0, "tp_atr": [2.0, 3.5, 6.0], "life_candles": 96}
    # the manifest's extra keys (ev_buckets) are not carried into the prediction log
    assert parsed.edge_evidence == {"LONG": {"n": 812, "mean_net_pct": -0.28, "se_pct": 0.05},
                                    "SHORT": {"n": 790, "mean_net_pct": 0.21, "se_pct": 0.06}}
    assert Prediction.from_dict(json.loads(json.dumps(parsed.to_dict()))) == parsed


def test_a_prediction_without_the_new_fields_still_loads_with_none() -> None:
    old = {k: v for k, v in record().items()
           if k not in ("outcome_probabilities", "expiry_exit_atr", "bracket", "edge_evidence")}
    parsed = Prediction.from_dict(old)
    assert (parsed.outcome_probabilities, parsed.expiry_exit_atr, parsed.bracket, parsed.edge_evidence) == (
        None, None, None, None)


@pytest.mark.parametrize(("changes", "field"), [
    ({"outcome_probabilities": [0.2] * 5}, "prediction.outcome_probabilities"),
    ({"outcome_probabilities": {"UP": LONG}}, "prediction.outcome_probabilities"),
    ({"outcome_probabilities": {"LONG": {k: v for k, v in LONG.items() if k != "expiry"}}},
     "prediction.outcome_probabilities.LONG"),
    ({"outcome_probabilities": {"LONG": LONG | {"tp4": 0.0}}}, "prediction.outcome_probabilities.LONG"),
    ({"outcome_probabilities": {"LONG": LONG | {"stop": "0.61"}}}, "prediction.outcome_probabilities.LONG.stop"),
    ({"expiry_exit_atr": {"LONG": [0.1, 0.2]}}, "prediction.expiry_exit_atr.LONG"),
    ({"expiry_exit_atr": {"LONG": "0.1"}}, "prediction.expiry_exit_atr.LONG"),
    ({"bracket": {"sl_atr": 1.0, "tp_atr": [2.0, 3.5, 6.0]}}, "prediction.bracket"),
    ({"bracket": {"sl_atr": 1.0, "tp_atr": [2.0, 3.5], "life_candles": 96}}, "prediction.bracket.tp_atr"),
    ({"bracket": {"sl_atr": 1.0, "tp_atr": [2.0, 3.5, 6.0], "life_candles": 9.6}},
     "prediction.bracket.life_candles"),
    ({"bracket": {"sl_atr": None, "tp_atr": [2.0, 3.5, 6.0], "life_candles": 96}}, "prediction.bracket.sl_atr"),
])
def test_a_bad_shape_is_a_contract_error_naming_the_field(changes: dict[str, Any], field: str) -> None:
    with pytest.raises(ContractError, match=rf"^{field.replace('.', r'\.')}:"):
        Prediction.from_dict(record(**changes))


@pytest.mark.parametrize("outcomes", [
    LONG | {"stop": math.nan}, LONG | {"stop": -0.1, "expiry": 0.89}, LONG | {"stop": 0.9},
])
def test_bad_probability_values_are_data_not_a_contract_error(outcomes: dict[str, float]) -> None:
    parsed = Prediction.from_dict(record(outcome_probabilities={"LONG": outcomes}))
    assert parsed.outcome_probabilities is not None
    assert parsed.outcome_probabilities["LONG"]["stop"] == pytest.approx(outcomes["stop"], nan_ok=True)


@pytest.mark.parametrize("evidence", [
    "proven", [1, 2], {"LONG": "yes"}, {"LONG": {"n": 10, "mean_net_pct": 0.5}},
    {"LONG": {"n": -1, "mean_net_pct": 0.5, "se_pct": 0.1}},
    {"LONG": {"n": True, "mean_net_pct": 0.5, "se_pct": 0.1}},
    {"LONG": {"n": 10, "mean_net_pct": math.inf, "se_pct": 0.1}},
    {"LONG": {"n": 10, "mean_net_pct": 0.5, "se_pct": -0.1}},
    {"LONG": {"n": 10, "mean_net_pct": "0.5", "se_pct": 0.1}},
])
def test_malformed_edge_evidence_is_dropped_never_refused(evidence: Any) -> None:
    parsed = Prediction.from_dict(record(edge_evidence=evidence))
    assert not (parsed.edge_evidence or {}).get("LONG")


def test_signal_and_decision_new_fields_default_to_none_so_old_items_load() -> None:
    # an item written before issue 12 has none of the new fields
    sample = Signal.from_dict(_signal_dict())
    assert (sample.expected_value_pct, sample.expected_r, sample.outcome_probabilities, sample.tradeable,
            sample.paper_reasons) == (None, None, None, None, None)
    assert sample.is_tradeable  # published before the gate existed: tradeable as it was then


def test_signal_new_fields_round_trip_and_are_checked() -> None:
    outcomes = dict(zip(OUTCOMES, (0.6, 0.1, 0.05, 0.05, 0.2), strict=True))
    signal = Signal.from_dict(_signal_dict() | {
        "expected_value_pct": -0.31, "expected_r": -0.23, "outcome_probabilities": outcomes,
        "tradeable": False, "paper_reasons": [PaperReason.NO_PROVEN_EDGE.value]})
    assert signal.paper_reasons == ("no_proven_edge",) and not signal.is_tradeable
    assert Signal.from_dict(json.loads(json.dumps(signal.to_dict()))) == signal
    with pytest.raises(ContractError, match=r"signal\.tradeable"):
        Signal.from_dict(_signal_dict() | {"tradeable": "yes"})
    with pytest.raises(ContractError, match=r"signal\.outcome_probabilities"):
        Signal.from_dict(_signal_dict() | {"outcome_probabilities": {"stop": 1.0}})
    with pytest.raises(ContractError, match=r"signal\.paper_reasons"):
        Signal.from_dict(_signal_dict() | {"paper_reasons": "no_proven_edge"})


def test_decision_logs_paper_reasons_as_a_list() -> None:
    decision = Decision(batch_id="b", model_id="m", symbol="BTC/USDT", candle_time="t", decided_at="t",
                        accepted=True, reason=None, reasons=(), message="m", side="LONG", probability=0.6,
                        confidence=0.6, entry_price=1.0, atr=0.1, gross_profit_pct=1.0, costs_pct=0.3,
                        expected_net_profit_pct=0.7, sl_pct=1.0, tradeable=False,
                        paper_reasons=("negative_expected_value",), expected_value_pct=math.nan)
    logged = decision.to_dict()
    assert logged["paper_reasons"] == ["negative_expected_value"] and logged["tradeable"] is False
    assert logged["expected_value_pct"] is None  # JSON has no NaN


def _signal_dict() -> dict[str, Any]:
    return {
        "signal_id": "signal_BTC_USDT_abc", "symbol": "BTC/USDT", "side": "LONG", "entry_price": 100.0,
        "tp1_price": 102.0, "tp2_price": 103.5, "tp3_price": 106.0, "sl_price": 99.0, "leverage": 5,
        "position_size_usd": 1000.0, "quantity": 10.0, "gross_profit_pct": 3.83, "costs_pct": 0.32,
        "expected_net_profit_pct": 3.51, "net_risk_reward_ratio": 2.66, "confidence": 0.6, "probability": 0.6,
        "risk_reward_ratio": 3.83, "status": "ACTIVE", "created_at": "2025-04-29T12:00:05Z",
        "expires_at": "2025-04-30T12:00:05Z", "model_id": "m", "batch_id": "b", "exchange": "binance",
        "timeframe": "15m", "atr": 1.0, "candle_time": "2025-04-29T11:45:00Z", "tp_weights": [0.5, 0.3, 0.2],
    }
