"""EvaluateFunction (state machine step 2): champion vs challenger on the newest window neither trained on.

Input: TrainFunction's output. Output: per market both models' figures, the verdict and its reasons.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from traderai.observability import logger, metrics, tracer
from traderai.services.retraining import evaluate_step, run_time
from traderai.wiring import retraining_runtime


@logger.inject_lambda_context()
@metrics.log_metrics(capture_cold_start_metric=True)
@tracer.capture_lambda_handler(capture_response=False)
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    runtime = retraining_runtime()
    result = evaluate_step(runtime.settings, runtime.retrain, runtime.archive, runtime.s3, event, run_time(event))
    logger.info("Models evaluated", extra={"run_id": result["run_id"], "promotions": result["promotions"]})
    return result
