"""The template's RetrainStateMachine definition run locally with the real step handlers (moto)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from traderai.adapters.candle_archive import CandleArchive
from traderai.local.retraining import StateMachineRunner
from traderai.market.csv import bundled_candles_path, load_candles_csv
from traderai.services.archive import RecordedHistory, archive_markets
from traderai.testing.fake_exchange import utc
from traderai.testing.handlers import FakeLambdaContext, load_handler

RUN_AT = utc(2025, 4, 27, 2)


@pytest.fixture
def invoke(aws, function_env):
    params = {"Markets": "BTC/USDT", "TrainDays": "120"}
    calls: list[str] = []

    def call(logical_id: str, event: Any) -> Any:
        calls.append(logical_id)
        function_env(logical_id, **params)
        return load_handler(logical_id.removesuffix("Function").lower()).handler(event, FakeLambdaContext())

    call.calls = calls  # type: ignore[attr-defined]
    return call


def test_the_definition_runs_train_evaluate_promote_or_keep_and_notifies(aws, template, invoke) -> None:
    archive = CandleArchive(aws.s3, aws.bucket, "binance")
    candles = {"BTC/USDT": load_candles_csv(bundled_candles_path("BTC/USDT"), "BTC/USDT")}
    asyncio.run(archive_markets(archive, RecordedHistory(candles), ["BTC/USDT"], "15m", RUN_AT, backfill_days=200))
    execution = StateMachineRunner(template, "RetrainStateMachine", invoke).run({"time": "2025-04-27T02:00:00Z"},
                                                                                RUN_AT)
    assert execution.error is None
    assert execution.states in (["Train", "Evaluate", "PromoteOrKeep", "Promote", "Notify"],
                                ["Train", "Evaluate", "PromoteOrKeep", "Keep", "Notify"])
    assert invoke.calls == ["TrainFunction", "EvaluateFunction", "PromoteFunction"]
    (notification,) = execution.notifications
    assert notification["Subject"].startswith("TraderAI retraining 20250427T020000Z")
    assert notification["Message"].startswith("BTC/USDT 15m: ")
    assert aws.objects("retraining/") == ["retraining/dt=2025-04-27/20250427T020000Z.json"]


def test_a_failing_step_is_caught_published_and_fails_the_execution_without_moving_a_pointer(
        aws, template, invoke) -> None:
    before = aws.s3.get_object(Bucket=aws.bucket, Key="models/BTC_USDT/15m/latest.json")["Body"].read()
    execution = StateMachineRunner(template, "RetrainStateMachine", invoke).run({"no": "time"}, RUN_AT)
    assert execution.states == ["Train", "NotifyFailure", "Failed"]
    assert execution.error["Error"] == "EventError"
    (notification,) = execution.notifications
    assert notification["Subject"] == "TraderAI retraining failed; the champions stay"
    assert notification["Message"].startswith("A retraining step failed after its retries: EventError: ")
    assert aws.s3.get_object(Bucket=aws.bucket, Key="models/BTC_USDT/15m/latest.json")["Body"].read() == before
    assert aws.objects("retraining/") == []


def test_a_market_refused_before_any_decision_counts_under_why_no_signals() -> None:
    """model_expired (and every other market failure of a tick) is counted beside the rejections the page shows."""
    from traderai.local.scheduler import TickReport
    from traderai.local.stack import LocalOptions, LocalStack

    stack = LocalStack(LocalOptions(), console=lambda _: None)
    stack._report(TickReport(RUN_AT, failures=[("BTC/USDT", "model_expired"), ("ETH/USDT", "model_expired")]))
    stack._report(TickReport(RUN_AT, failures=[("BTC/USDT", "model_expired")]))
    assert stack.market_failures == {"model_expired": 3}
