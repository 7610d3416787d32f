"""The schedule event through PredictFunction and SignalFunction under moto, checked field by field."""

from __future__ import annotations

import copy
import json
import logging
import math
from datetime import datetime

import pytest

from traderai.contracts import SettingsError, Signal
from traderai.events import EventError
from traderai.testing.handlers import FakeLambdaContext, load_event, load_handler

Aws = object  # the fixture's type lives in conftest.py; annotations here are for the reader


MARKETS = "BTC/USDT,ETH/USDT,SOL/USDT,BNB/USDT"
PREDICTION_FIELDS = {"batch_id", "model_id", "exchange", "symbol", "timeframe", "candle_time", "predicted_at",
                     "price", "atr", "probability", "confidence", "side", "horizon", "features"}


@pytest.fixture
def predict(function_env):
    function_env("PredictFunction", MarketSource="replay", Markets=MARKETS)
    return load_handler("predict").handler


def destination_envelope(reply: dict) -> dict:
    """What Lambda's on-success destination delivers to SignalFunction."""
    envelope = copy.deepcopy(load_event("signal_destination.json"))
    envelope["responsePayload"] = reply
    return envelope


def next_candle_envelope() -> dict:
    """The sample destination envelope, one 15m candle later (same markets, same model)."""
    later = copy.deepcopy(load_event("signal_destination.json"))
    later["responsePayload"]["tick_time"] = "2025-04-07T14:15:00Z"
    for prediction in later["responsePayload"]["predictions"]:
        prediction["candle_time"] = "2025-04-07T14:00:00Z"
    return later


def test_schedule_event_logs_every_prediction_in_one_object(aws: Aws, predict) -> None:
    reply = predict(load_event("predict_schedule.json"), FakeLambdaContext())

    keys = aws.objects("predictions/")
    assert keys == ["predictions/dt=2025-04-07/20250407T140000Z.jsonl"]
    records = aws.json_lines(keys[0])
    assert sorted(r["symbol"] for r in records) == sorted(MARKETS.split(","))
    for record in records:
        assert set(record) >= PREDICTION_FIELDS
        assert record["candle_time"] == "2025-04-07T13:45:00Z"  # last candle closed at 14:00
        assert record["batch_id"] == f"{record['model_id']}_20250407_140000"
        assert record["model_id"].startswith(record["symbol"].replace("/", "_") + "_15m_")
        assert 0.0 <= record["probability"] <= 1.0
        assert record["confidence"] == pytest.approx(max(record["probability"], 1 - record["probability"]))
        assert record["side"] == ("long" if record["probability"] >= 0.5 else "short")
        assert record["atr"] > 0 and record["price"] > 0 and record["horizon"] >= 1
        assert all(math.isfinite(v) for v in record["features"].values())
    # the hand-off is compact: the same predictions without their feature vectors
    assert reply["tick_time"] == "2025-04-07T14:00:00Z"
    assert [p["batch_id"] for p in reply["predictions"]] == [r["batch_id"] for r in records]
    assert all("features" not in p for p in reply["predictions"])


def test_a_tick_without_a_new_closed_candle_does_nothing(aws: Aws, predict) -> None:
    event = {**load_event("predict_schedule.json"), "time": "2025-04-07T14:05:04Z"}  # 15m candle closed at 14:00
    reply = predict(event, FakeLambdaContext())
    assert reply["predictions"] == []
    assert aws.objects("predictions/") == []


def test_predictions_become_signals_and_every_decision_is_logged(aws: Aws, predict, signal) -> None:
    reply = predict(load_event("predict_schedule.json"), FakeLambdaContext())
    summary = signal(destination_envelope(reply), FakeLambdaContext())

    decisions = aws.json_lines("decisions/dt=2025-04-07/20250407T140000Z.jsonl")
    assert len(decisions) == len(reply["predictions"]) == summary["decisions"]
    accepted = [d for d in decisions if d["accepted"]]
    assert all(d["reason"] for d in decisions if not d["accepted"])
    items = aws.signal_items()
    assert len(items) == len(accepted) == summary["stored"]
    assert {i["signal_id"]["S"] for i in items} == {d["signal_id"] for d in accepted}
    for item in items:
        stored = {name: next(iter(value.values())) for name, value in item.items()}
        assert set(Signal.required_field_names()) <= set(stored)
        assert stored["status"] == "ACTIVE" and stored["feed"] == "ALL"


def test_signal_items_match_the_contract_field_by_field(aws: Aws, signal) -> None:
    summary = signal(load_event("signal_destination.json"), FakeLambdaContext())
    assert summary["stored"] == 1  # BTC accepted; ETH rejected for confidence and net profit
    from traderai.adapters.signal_store import SignalStore

    stored = SignalStore(aws.signals_table).get(aws.signal_items()[0]["signal_id"]["S"])
    assert stored is not None
    # entry 77,250.12, ATR 820.5: TP k = entry + m_k * ATR, SL = entry - ATR (hand-computed)
    assert (stored.symbol, stored.side, stored.status) == ("BTC/USDT", "LONG", "ACTIVE")
    assert stored.entry_price == 77_250.12
    assert (stored.tp1_price, stored.tp2_price, stored.tp3_price) == (78_891.12, 80_121.87, 82_173.12)
    assert stored.sl_price == 76_429.62
    assert stored.leverage == 20 and stored.position_size_usd == 1000.0
    assert stored.quantity == 0.01294  # 1000 / 77,250.12 = 0.012944.. rounded down to 0.00001
    gross = (2.0 + 3.5 + 6.0) / 3 * 820.5 / 77_250.12 * 100
    assert stored.gross_profit_pct == pytest.approx(gross, abs=1e-6)
    assert stored.costs_pct == pytest.approx(0.32)
    assert stored.expected_net_profit_pct == pytest.approx(gross - 0.32, abs=1e-6)
    assert stored.risk_reward_ratio == pytest.approx(gross / (820.5 / 77_250.12 * 100), abs=1e-6)
    assert (stored.confidence, stored.probability) == (0.68, 0.68)
    assert stored.model_id == "BTC_USDT_15m_20250101_000000"
    assert stored.batch_id == "BTC_USDT_15m_20250101_000000_20250407_140000"
    assert (stored.exchange, stored.timeframe, stored.atr) == ("binance", "15m", 820.5)
    assert stored.expires_at > stored.created_at


def test_rejections_are_logged_in_the_seeds_words(aws: Aws, signal, caplog: pytest.LogCaptureFixture) -> None:
    signal(load_event("signal_destination.json"), FakeLambdaContext())
    decisions = aws.json_lines("decisions/dt=2025-04-07/20250407T140000Z.jsonl")
    eth = next(d for d in decisions if d["symbol"] == "ETH/USDT")
    assert eth["reason"] == "low_net_profit" and "low_confidence" in eth["reasons"]
    assert eth["message"].startswith("Signal rejected for ETH/USDT: Expected net profit ")
    assert eth["message"].endswith("% < minimum 2.0%")


def test_bare_prediction_list_is_accepted_and_a_bad_atr_is_rejected_not_stored(aws: Aws, signal) -> None:
    summary = signal(load_event("signal_predictions_list.json"), FakeLambdaContext())
    assert summary["rejected"] == {"invalid_prediction": 1}
    assert [i["symbol"]["S"] for i in aws.signal_items()] == ["SOL/USDT"]


def test_a_nan_probability_is_rejected_with_a_reason_and_logged_as_null(aws: Aws, signal) -> None:
    predictions = load_event("signal_predictions_list.json")[:1]
    predictions[0] = {**predictions[0], "probability": float("nan")}
    summary = signal(json.loads(json.dumps(predictions)), FakeLambdaContext())
    assert summary["rejected"] == {"invalid_prediction": 1} and aws.signal_items() == []
    logged = aws.json_lines(aws.objects("decisions/")[0])
    assert logged[0]["reason"] == "invalid_prediction" and logged[0]["probability"] is None


def test_a_duplicated_tick_leaves_one_batch_object_and_no_duplicate_signal(aws: Aws, predict, signal) -> None:
    event = load_event("predict_schedule.json")
    first = predict(event, FakeLambdaContext())
    second = predict(event, FakeLambdaContext())  # EventBridge/Lambda delivered the tick twice
    signal(destination_envelope(first), FakeLambdaContext())
    again = signal(destination_envelope(second), FakeLambdaContext())

    assert len(aws.objects("predictions/")) == 1 and len(aws.objects("decisions/")) == 1
    assert again["stored"] == 0 and again["already_stored"] == again["accepted"]
    decisions = aws.json_lines(aws.objects("decisions/")[0])
    assert len(decisions) == len(first["predictions"])  # one decision record per prediction
    assert len(aws.signal_items()) == sum(d["accepted"] for d in decisions)


def test_a_second_signal_for_an_active_symbol_and_side_is_rejected(aws: Aws, signal) -> None:
    signal(load_event("signal_destination.json"), FakeLambdaContext())
    later = next_candle_envelope()
    summary = signal(later, FakeLambdaContext())
    assert summary["rejected"].get("duplicate_active") == 1
    assert len(aws.signal_items()) == 1


def test_a_failing_market_is_logged_and_the_others_still_predict(
    aws: Aws, function_env, caplog: pytest.LogCaptureFixture
) -> None:
    function_env("PredictFunction", MarketSource="replay", Markets="BTC/USDT,ETH/USDT")
    from traderai.wiring import predict_runtime

    handler = load_handler("predict").handler
    runtime = predict_runtime()
    original = runtime.source.fetch_candles

    async def failing(symbol: str, timeframe: str, limit: int, now: datetime):
        if symbol == "ETH/USDT":
            from traderai.market import TemporaryMarketError

            raise TemporaryMarketError("ETH/USDT: exchange timed out after 4 attempts")
        return await original(symbol, timeframe, limit, now)

    runtime.source.fetch_candles = failing
    with caplog.at_level(logging.WARNING):
        reply = handler(load_event("predict_schedule.json"), FakeLambdaContext())
    assert [p["symbol"] for p in reply["predictions"]] == ["BTC/USDT"]
    assert reply["failures"] == [{"symbol": "ETH/USDT", "reason": "exchange_unavailable",
                                  "detail": "ETH/USDT: exchange timed out after 4 attempts"}]
    records = aws.json_lines(aws.objects("predictions/")[0])
    assert [r["symbol"] for r in records] == ["BTC/USDT"]


def test_a_market_with_no_published_model_is_model_missing_and_the_others_predict(
    aws: Aws, predict, capsys: pytest.CaptureFixture[str]
) -> None:
    aws.s3.delete_object(Bucket=aws.bucket, Key="models/SOL_USDT/15m/latest.json")  # never published

    reply = predict(load_event("predict_schedule.json"), FakeLambdaContext())

    assert [(f["symbol"], f["reason"]) for f in reply["failures"]] == [("SOL/USDT", "model_missing")]
    assert "no model published for SOL/USDT 15m" in reply["failures"][0]["detail"]
    assert sorted(p["symbol"] for p in reply["predictions"]) == ["BNB/USDT", "BTC/USDT", "ETH/USDT"]
    # EMF on stdout: the per-reason count, and the total MarketFailuresAlarm watches (dimension service only)
    emitted = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"_aws"' in line]
    failures = {tuple(sorted(d for dims in m["_aws"]["CloudWatchMetrics"][0]["Dimensions"] for d in dims)):
                m["MarketFailures"] for m in emitted if "MarketFailures" in m}
    assert failures == {("reason", "service"): [1.0], ("service",): [1.0]}


@pytest.mark.parametrize("bug", [KeyError("feature_quantiles"), IndexError("index 18 is out of bounds")])
def test_a_lookup_bug_in_a_model_fails_the_tick_loudly_instead_of_model_missing(
    aws: Aws, predict, bug: LookupError
) -> None:
    """A KeyError/IndexError is a bug: recording it as model_missing would let every tick 'succeed'."""
    from traderai.wiring import predict_runtime

    runtime = predict_runtime()
    registry = runtime.models

    class BrokenModel:  # the served model with a lookup bug in its arithmetic
        def __init__(self, served) -> None:
            self._served = served

        def __getattr__(self, name: str):
            return getattr(self._served, name)

        def predict_proba(self, _features):
            raise bug

    class Registry:
        def get(self, symbol: str, timeframe: str):
            return BrokenModel(registry.get(symbol, timeframe))

    runtime.models = Registry()
    with pytest.raises(type(bug)):
        predict(load_event("predict_schedule.json"), FakeLambdaContext())
    assert aws.objects("predictions/") == []  # nothing logged as if the tick had gone well


def test_an_event_that_is_not_a_schedule_fails_naming_what_is_wrong(aws: Aws, predict) -> None:
    with pytest.raises(EventError, match="EventBridge scheduled event"):
        predict(load_event("predict_not_a_schedule.json"), FakeLambdaContext())
    assert aws.objects("predictions/") == []


@pytest.mark.parametrize(("parameter", "value", "name"), [
    ("Markets", "DOGE/USDT", "MARKETS"),
    ("Timeframe", "1h", "TIMEFRAME"),
    ("ExchangeId", "nosuchexchange", "EXCHANGE_ID"),
])
def test_unknown_market_timeframe_or_exchange_fails_at_cold_start(
    aws: Aws, function_env, parameter: str, value: str, name: str
) -> None:
    source = "ccxt" if parameter == "ExchangeId" else "replay"
    function_env("PredictFunction", MarketSource=source, **{parameter: value})
    with pytest.raises(SettingsError, match=rf"^{name}:"):
        load_handler("predict").handler(load_event("predict_schedule.json"), FakeLambdaContext())


def test_an_expired_model_is_refused_with_a_reason(aws: Aws, predict) -> None:
    from traderai.adapters.model_registry import BundledModels, publish

    served = BundledModels().get("BTC/USDT", "15m")
    manifest = {**served.manifest, "expires_at": "2025-04-01T00:00:00Z"}  # before the tick
    root = BundledModels().root
    pointer = json.loads((root / "BTC_USDT" / "15m" / "latest.json").read_text())
    publish(aws.s3, aws.bucket, "models", json.loads((root / pointer["key"]).read_text()), manifest)

    reply = predict(load_event("predict_schedule.json"), FakeLambdaContext())
    assert "BTC/USDT" not in {p["symbol"] for p in reply["predictions"]}
    assert [f["reason"] for f in reply["failures"]] == ["model_expired"]


def test_a_signal_past_tp1_still_blocks_a_second_one_on_the_same_side(aws: Aws, signal) -> None:
    signal(load_event("signal_destination.json"), FakeLambdaContext())
    stored_id = aws.signal_items()[0]["signal_id"]["S"]
    aws.dynamodb.update_item(TableName=aws.signals_table, Key={"signal_id": {"S": stored_id}},
                             UpdateExpression="SET #s = :s", ExpressionAttributeNames={"#s": "status"},
                             ExpressionAttributeValues={":s": {"S": "TP1_HIT"}})  # the position is still open
    later = next_candle_envelope()
    summary = signal(later, FakeLambdaContext())
    assert summary["rejected"].get("duplicate_active") == 1
