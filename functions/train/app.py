"""TrainFunction (state machine step 1): fit the shipped recipe on the archive; write candidates, no pointer move.

Input: `{"time": ISO}` (the schedule's mark). Output: the run id, the candidates per market and the markets
refused with their reasons (`sam local invoke TrainFunction -e events/retrain_schedule.json`).
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from traderai.observability import logger, metrics, tracer
from traderai.services.retraining import run_time, train_step
from traderai.wiring import retraining_runtime


@logger.inject_lambda_context()
@metrics.log_metrics(capture_cold_start_metric=True)
@tracer.capture_lambda_handler(capture_response=False)
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    runtime = retraining_runtime()
    result = train_step(runtime.settings, runtime.retrain, runtime.archive, runtime.s3, run_time(event))
    logger.info("Candidates trained", extra=result)
    return result
