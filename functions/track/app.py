"""TrackFunction: every 5 minutes, follow each open signal to its outcome (TP1-3 hit, stopped, expired).

A status change is written only if the signal is still at the version read, so overlapping runs never
corrupt a signal; the change reaches WebSocket clients through the table's stream as `signal_update`.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from traderai.events import parse_schedule_event
from traderai.observability import logger, metrics, tracer
from traderai.wiring import track_runtime


@logger.inject_lambda_context(correlation_id_path="id")
@metrics.log_metrics(capture_cold_start_metric=True)
@tracer.capture_lambda_handler(capture_response=False)
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    runtime = track_runtime()
    tick_time = parse_schedule_event(event, runtime.settings.tick_seconds)
    report = runtime.run(tick_time)
    logger.info("Signals tracked", extra={"tick_time": tick_time.isoformat(), **report.to_dict()})
    return report.to_dict()
