"""PredictFunction: every 5 minutes, a prediction per market whose candle just closed, logged to S3.

Deployed, the TickStateMachine invokes it twice over: once to plan the tick (`detail.plan`: the shard
descriptors, services/sharding.py), then once per shard (`detail.shard`: that shard's markets, its own
predictions/ object and its share of the exchange budget). Its reply is the hand-off the state machine
passes to SignalFunction; a reply too big (200 KB) names the shard's predictions/ object instead of listing
the predictions. A scheduled event with an empty `detail` predicts every market in one invocation
(`sam local invoke`, the tests).
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from traderai.contracts import iso_utc
from traderai.events import EventError, parse_schedule_event
from traderai.observability import logger, metrics, tracer
from traderai.services.sharding import plan_reply
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
        plan = plan_reply(runtime.settings, runtime.shards)
        logger.info("Tick planned", extra={"tick_time": tick_time.isoformat(), "markets": plan["markets"],
                                           "shards": len(plan["shards"]), "max_concurrency": plan["max_concurrency"]})
        return {"tick_time": iso_utc(tick_time), **plan}
    shard = runtime.shards.shard(runtime.settings.markets, detail["shard"]) if "shard" in detail else None
    result = runtime.run(tick_time, shard)
    handoff = result.handoff()
    logger.info("Tick predicted", extra={"tick_time": tick_time.isoformat(), "log_key": result.log_key,
                                         "shard": result.shard,
                                         "predictions": len(result.predictions),
                                         "handoff": "claim_check" if handoff.predictions_key else "inline",
                                         "failures": [f.to_dict() for f in result.failures],
                                         "skipped": list(result.skipped)})
    return handoff.to_dict()
