"""A sharded tick under moto: the real PredictFunction (plan, then one invocation per shard) and SignalFunction,
run by the same plan the TickStateMachine runs (services.sharding.run_sharded_tick), the shards read from the
tick's plan object in S3 as the Distributed Map's ItemReader reads them; the market list from MARKETS or from
the S3 object MARKET_LIST_KEY, read anew by every plan."""

from __future__ import annotations

import json
import re

import pytest

from traderai.adapters.market_list import ShardPlans
from traderai.contracts import parse_iso_utc
from traderai.local.scheduler import scheduled_event
from traderai.market.listing import MarketListError
from traderai.services import predict as predict_service
from traderai.services.sharding import run_sharded_tick, shard_request
from traderai.testing.handlers import FakeLambdaContext, load_event, load_handler

Aws = object  # the fixture's type lives in conftest.py
MARKETS = "BTC/USDT,ETH/USDT,SOL/USDT,BNB/USDT"
LIST_KEY = "config/markets.csv"
TICK = load_event("predict_schedule.json")["time"]  # 2025-04-07T14:00:00Z


@pytest.fixture
def handlers(function_env, signal):
    function_env("PredictFunction", MarketSource="replay", Markets=MARKETS, ShardSize="1", ShardConcurrency="3")
    predict = load_handler("predict").handler
    return {"PredictFunction": predict, "SignalFunction": signal}


@pytest.fixture
def listed(function_env, signal):
    """PredictFunction deployed with MarketListKey (its Markets left at the template default)."""
    function_env("PredictFunction", MarketSource="replay", MarketListKey=LIST_KEY, ShardSize="2")
    return {"PredictFunction": load_handler("predict").handler, "SignalFunction": signal}


def _run(aws, handlers, tick: str = TICK, **kwargs):
    event = scheduled_event(parse_iso_utc(tick), "TickStateMachine")
    return run_sharded_tick(lambda name, request: handlers[name](request, FakeLambdaContext()),
                            ShardPlans(aws.s3, aws.bucket).read, event, **kwargs)


def _logged(aws, prefix: str = "predictions/") -> list[str]:
    return sorted(record["symbol"] for key in aws.objects(prefix) for record in aws.json_lines(key))


def test_a_tick_split_into_shards_logs_every_market_once_in_its_own_objects(aws: Aws, handlers) -> None:
    tick = _run(aws, handlers)

    assert tick.plan["shards"] == 4 and tick.plan["market_list"] == "MARKETS" and tick.plan["markets"] == 4
    assert tick.plan["plan_key"] == "plans/dt=2025-04-07/20250407T140000Z.json"
    items = json.loads(aws.s3.get_object(Bucket=aws.bucket, Key=tick.plan["plan_key"])["Body"].read())
    assert items == [{"index": i, "count": 4, "markets": [m], "weight_per_minute": None}
                     for i, m in enumerate(MARKETS.split(","))]
    assert tick.plan["max_concurrency"] == 3 and not tick.errors
    # a replay counts no exchange weight: no shares, and what the tick weighs (a klines and a ticker a market)
    assert (tick.plan["tick_weight"], tick.plan["share_per_minute"]) == (16, None)
    keys = aws.objects("predictions/")
    assert keys == [f"predictions/dt=2025-04-07/20250407T140000Z-s00{i}of004.jsonl" for i in range(4)]
    assert _logged(aws) == sorted(MARKETS.split(","))  # nothing lost, nothing doubled
    decisions = aws.objects("decisions/")
    assert len(decisions) == 4 and all("-s00" in key for key in decisions)
    assert _logged(aws, "decisions/") == sorted(MARKETS.split(","))


def test_one_shard_failing_is_retried_alone_and_the_others_still_log(aws: Aws, handlers, monkeypatch) -> None:
    original = predict_service.predict_market
    calls: dict[str, int] = {}

    def broken_for_sol(candles, *args, **kwargs):
        calls[candles.symbol] = calls.get(candles.symbol, 0) + 1
        if candles.symbol == "SOL/USDT":
            raise RuntimeError("a bug in this shard")  # not a market failure: the invocation fails
        return original(candles, *args, **kwargs)

    monkeypatch.setattr(predict_service, "predict_market", broken_for_sol)
    tick = _run(aws, handlers)

    (failed,) = [s for s in tick.shards if s.error]
    assert failed.item["index"] == 2 and failed.attempts == 2 and "a bug in this shard" in failed.error
    assert calls == {"BTC/USDT": 1, "ETH/USDT": 1, "SOL/USDT": 2, "BNB/USDT": 1}  # only the failed shard ran again
    assert _logged(aws) == ["BNB/USDT", "BTC/USDT", "ETH/USDT"]
    assert tick.predictions == 3


def test_a_shard_item_that_is_not_one_of_a_plan_fails_loudly(aws: Aws, handlers) -> None:
    from traderai.core.shards import ShardPlanError

    for item, message in (({"index": 0, "count": 3, "markets": 1}, "not a shard item"),
                          ({"index": 0, "count": 1, "markets": ["btc/usdt"], "weight_per_minute": None},
                           "not a canonical symbol")):
        with pytest.raises(ShardPlanError, match=message):
            handlers["PredictFunction"](shard_request(load_event("predict_schedule.json"), item), FakeLambdaContext())
    assert aws.objects("predictions/") == []


def test_the_market_list_is_read_from_s3_and_a_change_serves_from_the_next_tick(aws: Aws, listed) -> None:
    aws.s3.put_object(Bucket=aws.bucket, Key=LIST_KEY, Body=b"symbol\nBTC/USDT\neth_usdt\nSOL/USDT\n")
    first = _run(aws, listed)
    assert first.plan["market_list"] == f"s3://{aws.bucket}/{LIST_KEY}" and first.plan["market_list_version"]
    assert (first.plan["markets"], first.plan["shards"]) == (3, 2) and not first.errors
    assert _logged(aws) == ["BTC/USDT", "ETH/USDT", "SOL/USDT"]  # the list's, not Markets' four

    # an operator replaces the list (traderai markets put, aws s3 cp): same warm function, no redeploy
    aws.s3.put_object(Bucket=aws.bucket, Key=LIST_KEY, Body=b'["BNB/USDT"]')
    second = _run(aws, listed, tick="2025-04-07T14:15:00Z")
    assert (second.plan["markets"], second.plan["shards"]) == (1, 1) and not second.errors
    assert second.plan["market_list_version"] != first.plan["market_list_version"]
    assert [r["symbol"] for r in aws.json_lines("predictions/dt=2025-04-07/20250407T141500Z-s000of001.jsonl")] \
        == ["BNB/USDT"]


def test_a_shard_in_a_tick_without_a_close_loads_the_whole_lists_models(aws: Aws, listed) -> None:
    """14:05 closes no 15m candle: the shard predicts nothing, and its sandbox loads the models of every market
    the S3 list names, not only its own (the next close may bring it any shard)."""
    from traderai import wiring

    aws.s3.put_object(Bucket=aws.bucket, Key=LIST_KEY, Body=MARKETS.replace(",", "\n").encode())
    event = scheduled_event(parse_iso_utc("2025-04-07T14:05:00Z"), "TickStateMachine")
    item = {"index": 0, "count": 2, "markets": ["BTC/USDT", "ETH/USDT"], "weight_per_minute": None}
    reply = listed["PredictFunction"](shard_request(event, item), FakeLambdaContext())
    assert reply["predictions"] == [] and aws.objects("predictions/") == []
    cached = {symbol for symbol, _ in wiring.predict_runtime().models._cache}  # type: ignore[attr-defined]
    assert cached == set(MARKETS.split(","))


@pytest.mark.parametrize(("body", "message"), [
    (b"symbol\nBTC/USDT\nBTCUSDT\nETH/USDT\n", "config/markets.csv line 3: 'BTCUSDT' is not BASE/QUOTE"),
    (b"", "config/markets.csv: no market listed"),
    (b"BTC/USDT\nDOGE/USDT\n", "config/markets.csv: MARKETS: no recorded candles for DOGE/USDT"),
    (None, "config/markets.csv: no such object (upload one: traderai markets put FILE"),
])
def test_a_bad_or_missing_list_fails_the_tick_naming_why_and_nothing_runs(aws: Aws, listed, body, message) -> None:
    if body is not None:
        aws.s3.put_object(Bucket=aws.bucket, Key=LIST_KEY, Body=body)
    with pytest.raises(MarketListError, match=re.escape(message)):
        _run(aws, listed)
    assert aws.objects("plans/") == [] and aws.objects("predictions/") == []  # never part of a list, never empty


def test_a_tick_of_more_shards_than_the_budget_can_share_is_refused_and_counted(aws: Aws, handlers, caplog,
                                                                                capsys) -> None:
    """Each shard's share must hold its largest request (load_markets, 20): 4 shards of 1 market at 90 weight a
    minute (72 usable) would get 18 each, so the Plan state refuses the tick, logs why and counts TickRefused."""
    import dataclasses

    from traderai import wiring
    from traderai.core.shards import ShardShareError

    runtime = wiring.predict_runtime()
    assert runtime.shards is not None and runtime.shards.weight_per_minute is None  # the replay counts none
    event = shard_request(scheduled_event(parse_iso_utc(TICK), "TickStateMachine"))
    runtime.shards = dataclasses.replace(runtime.shards, weight_per_minute=6000)  # as for Binance: planned
    planned = handlers["PredictFunction"](event, FakeLambdaContext())
    assert planned["share_per_minute"] == {"smallest": 1200, "largest": 1200} and planned["tick_weight"] == 16
    capsys.readouterr()

    runtime.shards = dataclasses.replace(runtime.shards, weight_per_minute=90)
    with pytest.raises(ShardShareError, match="4 markets in 4 shards of up to 1 leave a shard 18 request weight"):
        handlers["PredictFunction"](event, FakeLambdaContext())
    assert aws.objects("plans/") == [planned["plan_key"]]  # the refused tick wrote no plan: no shard runs
    [logged] = [r for r in caplog.records if r.getMessage().startswith("Tick refused:")]
    assert logged.levelname == "ERROR" and logged.reason == "too_many_shards"
    emitted = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"_aws"' in line]
    assert [(m["TickRefused"], m["reason"]) for m in emitted if "TickRefused" in m] == [([1.0], "too_many_shards")]
