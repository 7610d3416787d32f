"""PromoteFunction (state machine step 3): move the pointer of the markets to promote (conditional write),
keep the others, and record every decision in retraining/dt=.../{run_id}.json.

Input: EvaluateFunction's output. Output: the records and the notification's subject and message.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from traderai.observability import logger, metrics, tracer
from traderai.services.retraining import days_to_expiry, decide_step, emit_expiry_metric, run_time
from traderai.wiring import retraining_runtime


@logger.inject_lambda_context()
@metrics.log_metrics(capture_cold_start_metric=True)
@tracer.capture_lambda_handler(capture_response=False)
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    runtime = retraining_runtime()
    now = run_time(event)
    result = decide_step(runtime.settings, runtime.s3, event, now, runtime.retrain)
    emit_expiry_metric(days_to_expiry(runtime.settings, runtime.s3, now), runtime.retrain.expiry_warning_days)
    return result
