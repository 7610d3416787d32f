"""CompactFunction: nightly, rewrite yesterday's prediction and decision logs into Parquet with Athena.

Takes the EventBridge scheduled event (compacts the UTC day before it fired) or `{"day": "YYYY-MM-DD"}`
for a backfill (`sam local invoke -e events/compact_day.json`).
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from traderai.observability import logger, metrics, tracer
from traderai.services.compaction import compact_day, day_to_compact
from traderai.wiring import compaction_runtime


@logger.inject_lambda_context(correlation_id_path="id")
@metrics.log_metrics(capture_cold_start_metric=True)
@tracer.capture_lambda_handler(capture_response=False)
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    runtime = compaction_runtime()
    day = day_to_compact(event)
    result = compact_day(day, runtime.queries, runtime.prefixes, runtime.today())
    logger.info("Day compacted", extra=result.summary())
    return result.summary()
