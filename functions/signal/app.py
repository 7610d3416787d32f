"""SignalFunction: turns a tick's predictions into stored signals and logs every decision.

Accepts the Lambda-destination envelope (deployed), PredictFunction's reply (inline predictions, or a
claim check naming the tick's predictions/ object), or a bare list of predictions (handy for
`sam local invoke`).
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from traderai.events import parse_handoff
from traderai.observability import logger, metrics, tracer
from traderai.services.signal import process_handoff
from traderai.wiring import signal_runtime


@logger.inject_lambda_context(correlation_id_path="requestContext.requestId")
@metrics.log_metrics(capture_cold_start_metric=True)
@tracer.capture_lambda_handler(capture_response=False)
def handler(event: Any, context: LambdaContext) -> dict[str, Any]:
    runtime = signal_runtime()
    now = runtime.clock()
    handoff = parse_handoff(event, now)
    outcome = process_handoff(handoff, runtime.settings.strategy, runtime.repository, runtime.log, now)
    logger.info("Tick decided", extra=outcome.summary())
    return outcome.summary()
