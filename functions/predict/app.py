"""PredictFunction: every 5 minutes, a prediction per market whose candle just closed, logged to S3.

Deployed, the TickStateMachine invokes it twice over: once to plan the tick (`detail.plan`: the market list
read from S3 or MARKETS, checked, split into shards written to the tick's plan object; services/sharding.py),
then once per item of that object (`detail.shard`: that shard's markets, its own predictions/ object and its
share of the exchange budget). A plan refused (a bad market list, a tick over the exchange budget) raises
after counting `TickRefused` by reason: the execution fails and TickFailedAlarm fires. A shard's reply is the
hand-off the state machine passes to SignalFunction; a reply too big (200 KB) names the shard's predictions/
object instead of listing the predictions. A scheduled event with an empty `detail` predicts every market
(MARKETS) in one invocation (`sam local invoke`, the tests).
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.metrics import MetricUnit, single_metric
from aws_lambda_powertools.utilities.typing import LambdaContext

from traderai.contracts import SettingsError, iso_utc
from traderai.core.shards import ShardPlanError
from traderai.events import EventError, parse_schedule_event
from traderai.observability import logger, metrics, tracer
from traderai.wiring import predict_runtime


@logger.inject_lambda_context(correlation_id_path="id")
@metrics.log_metrics(capture_cold_start_metric=True)
@tracer.capture_lambda_handler(capture_response=False)
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    runtime = predict_runtime()
    tick_time = parse_schedule_event(event, runtime.settings.tick_seconds)
    detail = event.get("detail") or {}
    if not isinstance(detail, dict):
        raise EventError(f"detail: expected an object, got {type(detail).__name__}")
    if detail.get("plan") is True:  # the TickStateMachine's Plan state
        try:
            plan = runtime.plan(tick_time)
        except (SettingsError, ShardPlanError) as exc:
            reason = getattr(exc, "reason", "plan_refused")
            logger.error(f"Tick refused: {exc}", extra={"reason": reason, "tick_time": tick_time.isoformat()})
            with single_metric(name="TickRefused", unit=MetricUnit.Count, value=1,
                               namespace=metrics.namespace) as metric:
                metric.add_dimension(name="reason", value=reason)
            raise
        logger.info("Tick planned", extra={"tick_time": tick_time.isoformat(), **plan})
        return {"tick_time": iso_utc(tick_time), **plan}
    shard = runtime.shards.shard(detail["shard"]) if "shard" in detail and runtime.shards else None
    result = runtime.run(tick_time, shard)
    handoff = result.handoff()
    logger.info("Tick predicted", extra={"tick_time": tick_time.isoformat(), "log_key": result.log_key,
                                         "shard": result.shard,
                                         "predictions": len(result.predictions),
                                         "handoff": "claim_check" if handoff.predictions_key else "inline",
                                         "failures": [f.to_dict() for f in result.failures],
                                         "skipped": list(result.skipped)})
    return handoff.to_dict()
