"""A hand-off too big for a Lambda destination goes by its predictions/ key (claim check), under moto.

Lambda carries at most 256 KB through a destination; at ~1,000 markets the compact predictions alone
are several times that, so PredictFunction names the tick's predictions/ object and SignalFunction reads it.
"""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from typing import Any

import pytest

from traderai.adapters.logs import DECISIONS, PREDICTIONS, JsonLinesLog, log_key
from traderai.contracts import Prediction
from traderai.core.features import FEATURE_NAMES
from traderai.events import HANDOFF_INLINE_LIMIT_BYTES, EventError, Handoff, parse_handoff, reply_size
from traderai.services.predict import TickResult
from traderai.testing.handlers import FakeLambdaContext, load_event

Aws = object  # the fixture's type lives in conftest.py; annotations here are for the reader

TICK = datetime(2025, 4, 7, 14, 0, tzinfo=UTC)
TICK_KEY = "predictions/dt=2025-04-07/20250407T140000Z.jsonl"
LAMBDA_DESTINATION_LIMIT_BYTES = 256 * 1024


def destination_envelope(reply: dict[str, Any]) -> dict[str, Any]:
    """What Lambda's on-success destination delivers to SignalFunction."""
    envelope = copy.deepcopy(load_event("signal_destination.json"))
    envelope["responsePayload"] = reply
    return envelope


def sample_predictions() -> list[Prediction]:
    """The sample tick's predictions (BTC accepted, ETH rejected), with feature vectors as logged."""
    records = load_event("signal_destination.json")["responsePayload"]["predictions"]
    features = {name: 0.1 * index for index, name in enumerate(FEATURE_NAMES)}
    return [Prediction.from_dict({**record, "features": features}) for record in records]


def synthetic_predictions(markets: int) -> list[Prediction]:
    """`markets` distinct markets at the sample tick, alternating the sample's accepted and rejected shapes."""
    shapes = sample_predictions()
    predictions = []
    for index in range(markets):
        shape = shapes[index % len(shapes)].to_dict()
        base = f"M{index:04d}"
        predictions.append(Prediction.from_dict({
            **shape, "symbol": f"{base}/USDT",
            "model_id": f"{base}_USDT_15m_20250101_000000",
            "batch_id": f"{base}_USDT_15m_20250101_000000_20250407_140000"}))
    return predictions


def log_predictions(aws: Aws, predictions: list[Prediction], tick: datetime = TICK) -> str:
    """Write the tick's predictions/ object as PredictFunction does (full records, features included)."""
    return JsonLinesLog(aws.s3, aws.bucket).write(PREDICTIONS, tick, [p.to_dict() for p in predictions])


def tick_result(predictions: list[Prediction], key: str | None) -> TickResult:
    return TickResult(TICK, tuple(predictions), (), (), key)


# ---------------------------------------------------------------- PredictFunction's side: inline or by key

def test_a_thousand_market_tick_hands_over_its_predictions_key_not_the_list() -> None:
    predictions = synthetic_predictions(1000)
    inline = Handoff(TICK, tuple(predictions)).to_dict()
    assert reply_size(inline) > LAMBDA_DESTINATION_LIMIT_BYTES  # inline, the destination would not be delivered

    reply = tick_result(predictions, TICK_KEY).handoff().to_dict()

    assert reply == {"tick_time": "2025-04-07T14:00:00Z", "predictions_key": TICK_KEY, "count": 1000,
                     "failures": []}
    assert reply_size(reply) < 1024


def test_a_common_tick_still_hands_over_its_predictions_inline() -> None:
    predictions = synthetic_predictions(100)
    reply = tick_result(predictions, TICK_KEY).handoff().to_dict()
    assert "predictions_key" not in reply and reply["count"] == 100
    assert [p["symbol"] for p in reply["predictions"]] == [p.symbol for p in predictions]


def test_the_inline_bound_is_inclusive_one_byte_over_goes_by_key() -> None:
    handoff = Handoff(TICK, tuple(synthetic_predictions(3)), ({"symbol": "X/USDT", "reason": "r", "detail": "d"},))
    size = reply_size(handoff.to_dict())

    at_bound = handoff.for_destination(TICK_KEY, max_inline_bytes=size)
    over_bound = handoff.for_destination(TICK_KEY, max_inline_bytes=size - 1)

    assert at_bound is handoff
    assert over_bound.to_dict() == {"tick_time": "2025-04-07T14:00:00Z", "predictions_key": TICK_KEY, "count": 3,
                                    "failures": [{"symbol": "X/USDT", "reason": "r", "detail": "d"}]}


def test_the_default_bound_leaves_room_under_the_destination_limit() -> None:
    assert HANDOFF_INLINE_LIMIT_BYTES <= 200 * 1024 < LAMBDA_DESTINATION_LIMIT_BYTES
    fits = Handoff(TICK, tuple(synthetic_predictions(100)))
    assert reply_size(fits.to_dict()) <= HANDOFF_INLINE_LIMIT_BYTES
    assert fits.for_destination(TICK_KEY) is fits


def test_a_claim_check_round_trips_through_parse() -> None:
    claim = tick_result(synthetic_predictions(1000), TICK_KEY).handoff()
    assert parse_handoff(destination_envelope(claim.to_dict()), TICK) == claim
    assert claim.count == 1000 and claim.predictions == ()


# ---------------------------------------------------------------- SignalFunction's side: read by key

def test_a_thousand_market_claim_check_decides_exactly_as_inline(aws: Aws, signal) -> None:
    predictions = synthetic_predictions(1000)
    key = log_predictions(aws, predictions)
    claim = tick_result(predictions, key).handoff()
    decisions_key = log_key(DECISIONS, TICK)

    by_key = signal(destination_envelope(claim.to_dict()), FakeLambdaContext())
    decided_by_key = aws.json_lines(decisions_key)
    inline = signal(destination_envelope(Handoff(TICK, tuple(predictions)).to_dict()), FakeLambdaContext())
    decided_inline = aws.json_lines(decisions_key)

    assert decided_by_key == decided_inline and len(decided_by_key) == 1000
    assert by_key["accepted"] == inline["accepted"] == 500  # every BTC-shaped market, no ETH-shaped one
    assert by_key["rejected"] == inline["rejected"]
    # the inline run is a re-delivery of the same tick: it finds every signal already stored
    assert by_key["stored"] == inline["already_stored"] == 500
    assert len(aws.signal_items()) == 500


def test_the_claim_check_event_file_decides_like_the_inline_one(aws: Aws, signal) -> None:
    log_predictions(aws, sample_predictions())
    summary = signal(load_event("signal_destination_claim_check.json"), FakeLambdaContext())
    assert summary["decisions"] == 2 and summary["stored"] == 1  # BTC accepted; ETH rejected
    assert [i["symbol"]["S"] for i in aws.signal_items()] == ["BTC/USDT"]


def test_a_claim_check_whose_object_is_missing_fails_clearly_and_decides_nothing(aws: Aws, signal) -> None:
    with pytest.raises(EventError, match=rf"claim check: no predictions to decide: .*{TICK_KEY} does not exist"):
        signal(load_event("signal_destination_claim_check.json"), FakeLambdaContext())
    assert aws.objects("decisions/") == [] and aws.signal_items() == []


@pytest.mark.parametrize(("predictions_key", "message"), [
    ("decisions/dt=2025-04-07/20250407T140000Z.jsonl", "is not under predictions/"),
    ("models/BTC_USDT/15m/latest.json", "is not under predictions/"),
    ("/predictions/dt=2025-04-07/20250407T140000Z.jsonl", "is not under predictions/"),
    ("predictions/../decisions/dt=2025-04-07/20250407T140000Z.jsonl", "is not the predictions object of tick"),
    ("predictions/dt=2025-04-07/20250407T135500Z.jsonl", "is not the predictions object of tick"),
    ("", "predictions_key is missing or empty"),
    (None, "predictions_key is missing or empty"),
])
def test_a_foreign_or_empty_key_is_refused_before_anything_is_read(
    aws: Aws, signal, predictions_key: str | None, message: str
) -> None:
    log_predictions(aws, sample_predictions())  # the tick's own object is there: only the key is wrong
    event = load_event("signal_destination_claim_check.json")
    event["responsePayload"]["predictions_key"] = predictions_key
    with pytest.raises(EventError, match=message):
        signal(event, FakeLambdaContext())
    assert aws.objects("decisions/") == [] and aws.signal_items() == []


@pytest.mark.parametrize(("changes", "message"), [
    ({"count": -1}, "count must be a non-negative integer"),
    ({"count": "2"}, "count must be a non-negative integer"),
    ({"count": None}, "count must be a non-negative integer"),
    ({"tick_time": None}, r"claim check: tick_time: None is not an ISO-8601 time"),
])
def test_a_malformed_claim_check_is_refused_naming_the_field(changes: dict[str, Any], message: str) -> None:
    event = load_event("signal_destination_claim_check.json")
    event["responsePayload"].update(changes)
    with pytest.raises(EventError, match=message):
        parse_handoff(event, TICK)
