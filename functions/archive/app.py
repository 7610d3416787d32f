"""ArchiveFunction: daily, append every market's closed candles to the S3 archive (the first run backfills).

Takes the EventBridge scheduled event (`sam local invoke ArchiveFunction -e events/archive_schedule.json`);
`{"time": ISO}` works too.
It also reports the soonest champion expiry (metric ChampionDaysToExpiry, alarmed below EXPIRY_WARNING_DAYS).
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from traderai.observability import logger, metrics, tracer
from traderai.services.archive import run_archive
from traderai.wiring import retraining_runtime

# Stop starting new pages this long before the timeout: the run returns `incomplete` and the next one resumes.
SAFETY_MS = 60_000


@logger.inject_lambda_context(correlation_id_path="id")
@metrics.log_metrics(capture_cold_start_metric=True)
@tracer.capture_lambda_handler(capture_response=False)
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    runtime = retraining_runtime()
    summary = run_archive(runtime, event, out_of_time=lambda: context.get_remaining_time_in_millis() < SAFETY_MS)
    logger.info("Candles archived", extra=summary)
    return summary
