"""Faults and redeliveries through the real handlers: nothing lost, nothing duplicated.

AWS faults are injected below moto with a botocore `before-send` hook, so the SDK's own bounded
retries (with jittered backoff) run for real and are counted; exchange faults come from the fake ccxt
exchange. Each test states how many times its fault was injected: the table in docs/operations.md.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import ccxt
import pytest
from aws_lambda_powertools.utilities.batch.exceptions import BatchProcessingError
from botocore.awsrequest import AWSResponse
from moto.core.botocore_stubber import MockRawResponse

from traderai import wiring
from traderai.adapters.connections import ConnectionStore
from traderai.apigw.connections import ConnectionsServer
from traderai.market.csv import bundled_candles_path, load_candles_csv
from traderai.market.exchange import CcxtSource, RetryPolicy
from traderai.testing.fake_exchange import FakeExchange
from traderai.testing.handlers import FakeLambdaContext, load_event, load_handler
from traderai.testing.serving import ServingTables

MARKETS = ("BTC/USDT", "ETH/USDT", "SOL/USDT", "BNB/USDT")
TICK = datetime(2025, 4, 7, 14, 0, tzinfo=UTC)


# ---------------------------------------------------------------- AWS fault injection

@dataclass
class Fault:
    """Answers matching requests with an AWS error before they reach moto; counts every attempt."""

    service: str
    code: str
    status: int
    times: int | None = None  # None: every attempt fails
    only: Callable[[dict[str, Any]], bool] = lambda body: True
    lost_response: bool = False  # True: the request is carried out, only its reply is lost
    attempts: int = 0
    injected: int = 0
    delays: list[float] = field(default_factory=list)

    def __call__(self, request: Any, **_: Any) -> AWSResponse | None:
        body = json.loads(request.body or b"{}") if self.service == "dynamodb" else {}
        if not self.only(body):
            return None
        self.attempts += 1
        if self.times is not None and self.injected >= self.times:
            return None
        self.injected += 1
        if not self.lost_response:  # moto's own before-send handler skips a URL it does not serve
            request.url = "https://fault-injected.invalid/"
        if self.service == "dynamodb":
            payload = json.dumps({"__type": f"com.amazonaws.dynamodb.v20120810#{self.code}",
                                  "message": "injected by the test"}).encode()
            headers = {"Content-Type": "application/x-amz-json-1.0", "x-amzn-ErrorType": self.code}
        else:
            payload = f"<Error><Code>{self.code}</Code><Message>injected</Message></Error>".encode()
            headers = {"Content-Type": "application/xml"}
        return AWSResponse(request.url, self.status, headers, MockRawResponse(payload))


def inject(client: Any, operation: str, fault: Fault, monkeypatch: pytest.MonkeyPatch) -> Fault:
    """Register `fault` on `client` for `operation`; SDK retry sleeps are recorded, not slept."""
    client.meta.events.register_first(f"before-send.{fault.service}.{operation}", fault)
    monkeypatch.setattr("botocore.endpoint.time.sleep", fault.delays.append)
    return fault


def pynamodb_client(store: Any) -> Any:
    return store._model._get_connection().connection.client


# ---------------------------------------------------------------- fixtures

@pytest.fixture
def signal(function_env, sample_clock) -> Callable[[Any], dict[str, Any]]:
    function_env("SignalFunction")
    handler = load_handler("signal").handler
    sample_clock()
    return lambda event: handler(copy.deepcopy(event), FakeLambdaContext())


@pytest.fixture
def signal_runtime(signal):
    from traderai.wiring import signal_runtime

    return signal_runtime()


def two_accepted_event() -> dict[str, Any]:
    """The destination event with its BTC prediction copied to SOL: two signals to store in one tick."""
    event = load_event("signal_destination.json")
    btc = next(p for p in event["responsePayload"]["predictions"] if p["symbol"] == "BTC/USDT")
    sol = {**btc, "symbol": "SOL/USDT", "batch_id": btc["batch_id"].replace("BTC", "SOL"),
           "model_id": btc["model_id"].replace("BTC", "SOL")}
    event["responsePayload"]["predictions"] = [btc, sol]
    return event


# ---------------------------------------------------------------- DynamoDB throttling on signal writes

def test_throttled_signal_write_retries_bounded_then_fails_the_tick_and_a_retry_stores_once(
    aws, signal, signal_runtime, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    fault = inject(pynamodb_client(signal_runtime.repository), "PutItem",
                   Fault("dynamodb", "ProvisionedThroughputExceededException", 400), monkeypatch)
    event = load_event("signal_destination.json")

    with pytest.raises(Exception, match="ProvisionedThroughputExceeded"):
        signal(event)  # Lambda's async retry, then the DLQ, take it from here
    assert fault.attempts == 4 == fault.injected  # pynamodb's 3 retries, standard mode
    assert len(fault.delays) == 3 and all(0 <= d <= 20 for d in fault.delays)  # jittered, capped backoff
    assert aws.signal_items() == []
    # write-ahead: the decision log of the tick is whole (one record per prediction) before any signal
    decisions = aws.json_lines("decisions/dt=2025-04-07/20250407T140000Z.jsonl")
    assert len(decisions) == len(event["responsePayload"]["predictions"])
    assert '"SignalWriteFailures"' in capsys.readouterr().out  # the alarm's metric was emitted

    fault.times = 0  # the throttling ends; Lambda retries the same event
    summary = signal(event)
    assert summary["stored"] == 1 and len(aws.signal_items()) == 1
    assert aws.objects("decisions/") == ["decisions/dt=2025-04-07/20250407T140000Z.jsonl"]
    assert len(aws.json_lines(aws.objects("decisions/")[0])) == len(decisions)


def test_a_tick_throttled_after_its_first_signal_completes_on_retry_without_duplicates(
    aws, signal, signal_runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    fault = inject(pynamodb_client(signal_runtime.repository), "PutItem",
                   Fault("dynamodb", "ProvisionedThroughputExceededException", 400, times=4,
                         only=lambda body: body.get("Item", {}).get("symbol", {}).get("S") == "SOL/USDT"),
                   monkeypatch)
    event = two_accepted_event()
    with pytest.raises(Exception, match="ProvisionedThroughputExceeded"):
        signal(event)
    assert [i["symbol"]["S"] for i in aws.signal_items()] == ["BTC/USDT"]

    again = signal(event)  # the async retry
    assert (again["stored"], again["already_stored"]) == (1, 1)
    assert sorted(i["symbol"]["S"] for i in aws.signal_items()) == ["BTC/USDT", "SOL/USDT"]
    assert fault.injected == 4


def test_a_signal_write_whose_reply_was_lost_is_not_stored_twice(
    aws, signal, signal_runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    fault = inject(pynamodb_client(signal_runtime.repository), "PutItem",
                   Fault("dynamodb", "InternalServerError", 500, times=1, lost_response=True), monkeypatch)
    summary = signal(load_event("signal_destination.json"))  # the SDK retry finds its own write there
    assert fault.injected == 1 and fault.attempts == 2
    assert (summary["stored"], summary["already_stored"]) == (0, 1) and len(aws.signal_items()) == 1


def test_the_same_destination_delivered_twice_stores_one_signal_and_one_decision_each(aws, signal) -> None:
    event = two_accepted_event()
    first, second = signal(event), signal(event)
    assert (first["stored"], second["stored"], second["already_stored"]) == (2, 0, 2)
    assert len(aws.signal_items()) == 2
    assert len(aws.json_lines(aws.objects("decisions/")[0])) == 2


# ---------------------------------------------------------------- S3 put failures

def test_decision_log_put_failure_stores_no_signal_and_the_retry_completes_the_tick(
    aws, signal, signal_runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    fault = inject(signal_runtime.log._s3, "PutObject", Fault("s3", "InternalError", 500), monkeypatch)
    event = load_event("signal_destination.json")
    with pytest.raises(Exception, match="InternalError"):
        signal(event)
    assert fault.attempts == fault.injected == 3  # boto3 standard retry mode: 3 attempts, then the tick fails whole
    assert aws.objects("decisions/") == [] and aws.signal_items() == []

    fault.times = fault.injected
    assert signal(event)["stored"] == 1
    assert len(aws.objects("decisions/")) == 1 and len(aws.signal_items()) == 1


@pytest.fixture
def predict(function_env):
    function_env("PredictFunction", MarketSource="replay", Markets=",".join(MARKETS))
    return load_handler("predict").handler


def test_prediction_log_put_failure_fails_the_tick_with_nothing_handed_on(
    aws, predict, monkeypatch: pytest.MonkeyPatch
) -> None:
    from traderai.wiring import predict_runtime

    fault = inject(predict_runtime().log._s3, "PutObject", Fault("s3", "SlowDown", 503), monkeypatch)
    with pytest.raises(Exception, match="SlowDown"):
        predict(load_event("predict_schedule.json"), FakeLambdaContext())
    assert fault.injected == 3 and aws.objects("predictions/") == []  # no reply: no hand-off to SignalFunction

    fault.times = fault.injected
    reply = predict(load_event("predict_schedule.json"), FakeLambdaContext())
    assert len(reply["predictions"]) == len(MARKETS)
    assert len(aws.json_lines(aws.objects("predictions/")[0])) == len(MARKETS)


# ---------------------------------------------------------------- exchange faults, per-market isolation

@pytest.fixture
def exchange_predict(aws, function_env, monkeypatch: pytest.MonkeyPatch):
    """PredictFunction with a fake ccxt exchange serving the bundled candles (retry sleeps recorded)."""
    from traderai.settings import Settings
    from traderai.wiring import build_predict_runtime, s3_client

    environment = function_env("PredictFunction", MarketSource="ccxt", Markets=",".join(MARKETS))
    candles = {symbol: load_candles_csv(bundled_candles_path(symbol), symbol) for symbol in MARKETS}
    fake = FakeExchange(candles, now=TICK + timedelta(seconds=5))
    sleeps: list[float] = []

    async def record_sleep(delay: float) -> None:
        sleeps.append(delay)

    settings = Settings.from_env(environment)
    source = CcxtSource(settings, exchange=fake, retry=RetryPolicy(attempts=4), sleep=record_sleep)
    runtime = build_predict_runtime(settings, s3_client(), source=source)
    runtime.clock = lambda: TICK + timedelta(seconds=5)
    module = load_handler("predict")
    monkeypatch.setattr(module, "predict_runtime", lambda: runtime)

    def run() -> dict[str, Any]:
        return module.handler(load_event("predict_schedule.json"), FakeLambdaContext())

    return run, fake, sleeps


@pytest.mark.parametrize(("fault", "times"), [
    (ccxt.RequestTimeout("binance GET /klines timed out"), 3),
    (ccxt.RateLimitExceeded('binance 429 {"code":-1003,"msg":"Too many requests"}'), 2),
    (ccxt.DDoSProtection("binance 418 I'm a teapot: IP banned"), 1),
    (ccxt.ExchangeNotAvailable("binance 503 Service Unavailable"), 3),
])
def test_temporary_exchange_faults_are_retried_with_backoff_and_lose_nothing(
    aws, exchange_predict, fault: Exception, times: int
) -> None:
    run, fake, sleeps = exchange_predict
    fake.fail_next("fetch_ohlcv", *([fault] * times), symbol="ETH/USDT")
    reply = run()
    assert sorted(p["symbol"] for p in reply["predictions"]) == sorted(MARKETS) and reply["failures"] == []
    assert fake.count("fetch_ohlcv", "ETH/USDT") == times + 1
    assert len(sleeps) == times and all(0 < s <= 32 for s in sleeps)
    assert len(aws.json_lines(aws.objects("predictions/")[0])) == len(MARKETS)


def test_an_exchange_down_for_one_market_past_the_retries_fails_only_that_market(aws, exchange_predict) -> None:
    run, fake, sleeps = exchange_predict
    fake.fail_always("fetch_ohlcv", ccxt.ExchangeNotAvailable("binance 502 Bad Gateway"), symbol="SOL/USDT")
    reply = run()
    assert fake.count("fetch_ohlcv", "SOL/USDT") == 4  # RetryPolicy(attempts=4): bounded
    assert sleeps == sorted(sleeps) and len(sleeps) == 3  # growing backoff between the 4 attempts
    assert [f["symbol"] for f in reply["failures"]] == ["SOL/USDT"]
    assert reply["failures"][0]["reason"] == "exchange_unavailable"
    logged = aws.json_lines(aws.objects("predictions/")[0])
    assert sorted(r["symbol"] for r in logged) == ["BNB/USDT", "BTC/USDT", "ETH/USDT"]


@pytest.mark.parametrize(("name", "mangle"), [
    ("missing_field", lambda rows: [*rows[:-3], rows[-3][:5], *rows[-2:]]),
    ("non_numeric", lambda rows: [*rows[:-2], [rows[-2][0], "abc", *rows[-2][2:]], rows[-1]]),
    ("null_close", lambda rows: [*rows[:-2], [*rows[-2][:4], None, rows[-2][5]], rows[-1]]),
    ("not_a_list", lambda rows: {"error": "maintenance"}),
])
def test_malformed_candles_fail_only_their_market_with_a_reason(aws, exchange_predict, name: str, mangle) -> None:
    run, fake, _ = exchange_predict
    fake.mangle("BNB/USDT", mangle)
    reply = run()
    (failure,) = reply["failures"]
    assert failure["symbol"] == "BNB/USDT" and failure["reason"], name
    assert sorted(p["symbol"] for p in reply["predictions"]) == ["BTC/USDT", "ETH/USDT", "SOL/USDT"]
    assert fake.count("fetch_ohlcv", "BNB/USDT") == 1  # a permanent fault is not retried


def test_a_stale_feed_is_refused_not_predicted_on(aws, exchange_predict) -> None:
    run, fake, _ = exchange_predict
    fake.freeze("BTC/USDT", TICK - timedelta(hours=2))
    reply = run()
    (failure,) = reply["failures"]
    assert failure["symbol"] == "BTC/USDT" and failure["reason"] == "stale_feed"
    assert "BTC/USDT" not in {r["symbol"] for r in aws.json_lines(aws.objects("predictions/")[0])}


def test_the_tickers_rate_limited_are_retried_in_one_request_and_lose_nothing(aws, exchange_predict) -> None:
    run, fake, sleeps = exchange_predict
    fake.fail_next("fetch_tickers", *[ccxt.RateLimitExceeded('binance 429 {"code":-1003}')] * 2)
    reply = run()
    assert sorted(p["symbol"] for p in reply["predictions"]) == sorted(MARKETS) and reply["failures"] == []
    assert fake.ticker_requests == [list(MARKETS)] * 3 and fake.count("fetch_ticker") == 0  # the 4 tickers at once
    assert len(sleeps) == 2 and sleeps[0] >= 1.0  # a rate limit waits 4x the base delay


@pytest.mark.parametrize(("mangle", "reason"), [(lambda ticker: None, "ticker_missing"),
                                                (lambda ticker: {**ticker, "quoteVolume": -1.0}, "bad_ticker")])
def test_a_ticker_missing_from_the_batch_or_bad_fails_only_its_market(aws, exchange_predict, mangle,
                                                                     reason: str) -> None:
    run, fake, _ = exchange_predict
    fake.mangle_ticker("SOL/USDT", mangle)
    reply = run()
    assert [(f["symbol"], f["reason"]) for f in reply["failures"]] == [("SOL/USDT", reason)]
    assert sorted(p["symbol"] for p in reply["predictions"]) == ["BNB/USDT", "BTC/USDT", "ETH/USDT"]
    assert fake.count("fetch_tickers") == 1


def test_the_same_tick_delivered_twice_logs_one_batch_object(aws, exchange_predict) -> None:
    run, _, _ = exchange_predict
    first, second = run(), run()
    assert first == second
    assert len(aws.objects("predictions/")) == 1
    assert len(aws.json_lines(aws.objects("predictions/")[0])) == len(MARKETS)


# ---------------------------------------------------------------- broadcast: one push per connection per version

@pytest.fixture
def broadcast(serving: ServingTables, gateway: ConnectionsServer, monkeypatch: pytest.MonkeyPatch):
    for name, value in serving.environment("BroadcastFunction").items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("WEBSOCKET_ENDPOINT", gateway.endpoint)
    wiring.clear()
    store = ConnectionStore(serving.connections_table, serving.subscriptions_table)
    now = datetime.now(UTC)
    for connection_id in ("c1=", "c2=", "c3="):
        store.add(connection_id, None, now)
    handler = load_handler("broadcast").handler
    yield lambda event: handler(copy.deepcopy(event), FakeLambdaContext())
    wiring.clear()


def test_a_stream_record_delivered_twice_pushes_once_per_connection(broadcast, gateway) -> None:
    event = load_event("broadcast_insert.json")
    assert broadcast(event) == {"batchItemFailures": []}
    assert broadcast(event) == {"batchItemFailures": []}  # the same record, redelivered
    for connection_id in ("c1=", "c2=", "c3="):
        assert len(gateway.messages(connection_id)) == 1, connection_id


def test_a_retry_after_a_partial_failure_pushes_only_to_those_that_missed_it(broadcast, gateway) -> None:
    event = load_event("broadcast_insert.json")
    gateway.failing["c3="] = 500
    with pytest.raises(BatchProcessingError, match="All records failed"):  # a one-record batch: all of it
        broadcast(event)
    del gateway.failing["c3="]
    assert broadcast(event) == {"batchItemFailures": []}  # the stream retries the record
    assert [len(gateway.messages(c)) for c in ("c1=", "c2=", "c3=")] == [1, 1, 1]
    assert len(gateway.posts("c3=", status=500)) == 1


def test_each_new_version_of_a_signal_is_pushed_once(broadcast, gateway) -> None:
    insert, modify = load_event("broadcast_insert.json"), load_event("broadcast_modify.json")
    for event in (insert, modify, modify, insert):
        broadcast(event)
    assert [m["type"] for m in gateway.messages("c1=")] == ["signal", "signal_update"]
