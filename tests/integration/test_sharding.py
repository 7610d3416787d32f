"""A sharded tick under moto: the real PredictFunction (plan, then one invocation per shard) and SignalFunction,
run by the same plan the TickStateMachine runs (services.sharding.run_sharded_tick)."""

from __future__ import annotations

import pytest

from traderai.local.scheduler import scheduled_event
from traderai.services import predict as predict_service
from traderai.services.sharding import run_sharded_tick
from traderai.testing.handlers import FakeLambdaContext, load_event, load_handler

Aws = object  # the fixture's type lives in conftest.py
MARKETS = "BTC/USDT,ETH/USDT,SOL/USDT,BNB/USDT"


@pytest.fixture
def handlers(function_env, signal):
    function_env("PredictFunction", MarketSource="replay", Markets=MARKETS, ShardSize="1", ShardConcurrency="3")
    predict = load_handler("predict").handler
    return {"PredictFunction": predict, "SignalFunction": signal}


def _run(handlers, **kwargs):
    tick = load_event("predict_schedule.json")["time"]
    from traderai.contracts import parse_iso_utc

    event = scheduled_event(parse_iso_utc(tick), "TickStateMachine")
    return run_sharded_tick(lambda name, request: handlers[name](request, FakeLambdaContext()), event, **kwargs)


def test_a_tick_split_into_shards_logs_every_market_once_in_its_own_objects(aws: Aws, handlers) -> None:
    tick = _run(handlers)

    assert tick.plan["shards"] == [{"index": i, "count": 4, "markets": 1} for i in range(4)]
    assert tick.plan["max_concurrency"] == 3 and not tick.errors
    keys = aws.objects("predictions/")
    assert keys == [f"predictions/dt=2025-04-07/20250407T140000Z-s00{i}of004.jsonl" for i in range(4)]
    logged = [record["symbol"] for key in keys for record in aws.json_lines(key)]
    assert sorted(logged) == sorted(MARKETS.split(","))  # nothing lost, nothing doubled
    decisions = aws.objects("decisions/")
    assert len(decisions) == 4 and all("-s00" in key for key in decisions)
    assert sorted(r["symbol"] for key in decisions for r in aws.json_lines(key)) == sorted(MARKETS.split(","))


def test_one_shard_failing_is_retried_alone_and_the_others_still_log(aws: Aws, handlers, monkeypatch) -> None:
    original = predict_service.predict_market
    calls: dict[str, int] = {}

    def broken_for_sol(candles, *args, **kwargs):
        calls[candles.symbol] = calls.get(candles.symbol, 0) + 1
        if candles.symbol == "SOL/USDT":
            raise RuntimeError("a bug in this shard")  # not a market failure: the invocation fails
        return original(candles, *args, **kwargs)

    monkeypatch.setattr(predict_service, "predict_market", broken_for_sol)
    tick = _run(handlers)

    (failed,) = [s for s in tick.shards if s.error]
    assert failed.descriptor["index"] == 2 and failed.attempts == 2 and "a bug in this shard" in failed.error
    assert calls == {"BTC/USDT": 1, "ETH/USDT": 1, "SOL/USDT": 2, "BNB/USDT": 1}  # only the failed shard ran again
    logged = sorted(r["symbol"] for key in aws.objects("predictions/") for r in aws.json_lines(key))
    assert logged == ["BNB/USDT", "BTC/USDT", "ETH/USDT"]
    assert tick.predictions == 3


def test_a_shard_descriptor_that_no_longer_matches_the_market_list_fails_loudly(aws: Aws, handlers) -> None:
    from traderai.core.shards import ShardPlanError
    from traderai.services.sharding import shard_request

    event = shard_request(load_event("predict_schedule.json"), {"index": 0, "count": 3, "markets": 1})
    with pytest.raises(ShardPlanError, match="market list changed"):
        handlers["PredictFunction"](event, FakeLambdaContext())
    assert aws.objects("predictions/") == []
