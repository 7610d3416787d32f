"""PredictFunction: every 5 minutes, a prediction per market whose candle just closed, logged to S3.

Its reply is the hand-off: the Lambda on-success destination passes it to SignalFunction. A reply too
big for a destination (256 KB) names the tick's predictions/ object instead of listing the predictions.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from traderai.events import parse_schedule_event
from traderai.observability import logger, metrics, tracer
from traderai.runtime import predict_runtime


@logger.inject_lambda_context(correlation_id_path="id")
@metrics.log_metrics(capture_cold_start_metric=True)
@tracer.capture_lambda_handler(capture_response=False)
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    runtime = predict_runtime()
    tick_time = parse_schedule_event(event, runtime.settings.tick_seconds)
    result = runtime.run(tick_time)
    handoff = result.handoff()
    logger.info("Tick predicted", extra={"tick_time": tick_time.isoformat(), "log_key": result.log_key,
                                         "predictions": len(result.predictions),
                                         "handoff": "claim_check" if handoff.predictions_key else "inline",
                                         "failures": [f.to_dict() for f in result.failures],
                                         "skipped": list(result.skipped)})
    return handoff.to_dict()
