"""SignalFunction with issue 12's fields (events/signal_destination.json): paper signals, invalid outcome
probabilities, and a protection lock read from the Signals table under moto."""

from __future__ import annotations

import copy
import dataclasses
from datetime import timedelta
from typing import Any

import pytest

from traderai.adapters.signal_store import SignalStore
from traderai.contracts import iso_utc, parse_iso_utc
from traderai.testing.handlers import FakeLambdaContext, load_event

DECISIONS = "decisions/dt=2025-04-07/20250407T140000Z.jsonl"
SAMPLE_DECIDED_AT = parse_iso_utc("2025-04-07T14:00:09Z")  # the sample clock of the `signal` fixture


def sample(**btc_changes: Any) -> dict[str, Any]:
    event = copy.deepcopy(load_event("signal_destination.json"))
    event["responsePayload"]["predictions"][0].update(btc_changes)
    return event


def hand_ev(prediction: dict[str, Any], side: str = "LONG") -> float:
    """EV of the seed's bracket (SL 1, TP 2/3.5/6 ATR, weights 1/3, costs 0.32 %) by the contract's table."""
    unit = prediction["atr"] / prediction["price"] * 100
    sl, tp1, tp2, tp3 = unit, 2 * unit, 3.5 * unit, 6 * unit
    p = prediction["outcome_probabilities"][side]
    e = prediction["expiry_exit_atr"][side]
    payoff = {"stop": -sl, "tp1_stop": tp1 / 3 - 2 * sl / 3, "tp2_stop": (tp1 + tp2 - sl) / 3,
              "tp3": (tp1 + tp2 + tp3) / 3, "expiry": sum(e) / 3 * unit}
    return sum(p[o] * payoff[o] for o in payoff) - 0.32


def test_the_sample_btc_candidate_is_stored_as_paper_with_its_expected_value(aws: Any, signal: Any) -> None:
    summary = signal(load_event("signal_destination.json"), FakeLambdaContext())
    btc_prediction = load_event("signal_destination.json")["responsePayload"]["predictions"][0]
    assert summary["stored"] == 1 and summary["tradeable"] == 0
    assert summary["paper"] == {"negative_expected_value": 1, "no_proven_edge": 1}
    stored = SignalStore(aws.signals_table).get(aws.signal_items()[0]["signal_id"]["S"])
    assert stored is not None and stored.tradeable is False
    assert stored.paper_reasons == ("negative_expected_value", "no_proven_edge")
    assert stored.expected_value_pct == pytest.approx(hand_ev(btc_prediction), abs=1e-6)  # about -0.62 %
    assert stored.expected_value_pct < 0 < stored.expected_net_profit_pct  # the best case is not the expectation
    assert stored.outcome_probabilities == btc_prediction["outcome_probabilities"]["LONG"]
    logged = {d["symbol"]: d for d in aws.json_lines(DECISIONS)}
    btc, eth = logged["BTC/USDT"], logged["ETH/USDT"]
    assert btc["accepted"] and btc["tradeable"] is False
    assert btc["paper_reasons"] == ["negative_expected_value", "no_proven_edge"]
    assert "mean net -0.280% - 2 SE (0.050) = -0.380%" in btc["message"]
    assert eth["tradeable"] is None and eth["paper_reasons"] == []  # rejected: no tradeable verdict


@pytest.mark.parametrize("bad", [{"stop": -0.01, "expiry": 0.20}, {"expiry": 0.18 + 1e-6}])
def test_invalid_outcome_probabilities_are_logged_as_invalid_prediction_and_never_stored(
        aws: Any, signal: Any, bad: dict[str, float]) -> None:
    event = sample()
    long = event["responsePayload"]["predictions"][0]["outcome_probabilities"]["LONG"]
    long.update(bad)
    summary = signal(event, FakeLambdaContext())
    assert summary["rejected"]["invalid_prediction"] == 1 and summary["stored"] == 0
    assert aws.signal_items() == []
    btc = next(d for d in aws.json_lines(DECISIONS) if d["symbol"] == "BTC/USDT")
    assert btc["reason"] == "invalid_prediction" and "LONG outcome probabilities" in btc["message"]


PROFITABLE = {"stop": 0.30, "tp1_stop": 0.15, "tp2_stop": 0.10, "tp3": 0.25, "expiry": 0.20}
PROVEN = {"LONG": {"n": 900, "mean_net_pct": 0.30, "se_pct": 0.05}}


def test_a_proven_positive_candidate_is_tradeable_until_the_stoploss_guard_locks_its_market(
        aws: Any, signal: Any) -> None:
    event = sample(outcome_probabilities={"LONG": PROFITABLE, "SHORT": PROFITABLE}, edge_evidence=PROVEN)
    signal(event, FakeLambdaContext())
    store = SignalStore(aws.signals_table)
    tradeable = store.get(aws.signal_items()[0]["signal_id"]["S"])
    assert tradeable is not None and tradeable.tradeable is True and tradeable.paper_reasons == ()
    assert tradeable.expected_value_pct is not None and tradeable.expected_value_pct > 0

    # Four BTC signals stopped at a loss within the last 24 h (the default guard: 4 stops in 24 h)
    for n, hours_ago in enumerate((20, 12, 6, 1)):
        created = SAMPLE_DECIDED_AT - timedelta(hours=hours_ago + 2)
        store.put_new(dataclasses.replace(
            tradeable, signal_id=f"signal_BTC_USDT_stopped{n}", status="STOPPED", closed_reason="stop",
            created_at=iso_utc(created), expires_at=iso_utc(created + timedelta(hours=24)),
            closed_at=iso_utc(SAMPLE_DECIDED_AT - timedelta(hours=hours_ago)), realised_net_pct=-1.38))
    aws.dynamodb.delete_item(TableName=aws.signals_table, Key={"signal_id": {"S": tradeable.signal_id}})

    summary = signal(event, FakeLambdaContext())
    assert summary["paper"] == {"protection_stoploss_guard": 1} and summary["tradeable"] == 0
    locked = store.get(tradeable.signal_id)
    assert locked is not None and locked.tradeable is False
    assert locked.paper_reasons == ("protection_stoploss_guard",)
    btc = next(d for d in aws.json_lines(DECISIONS) if d["symbol"] == "BTC/USDT")
    assert "stoploss_guard: 4 stops within 24 h (limit 4); locked 24 h until 2025-04-08T13:00:09Z" in btc["message"]
