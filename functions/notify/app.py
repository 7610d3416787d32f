"""NotifyFunction: new signals and status changes from the Signals table's stream, to Telegram and webhooks.

The stream's second consumer (BroadcastFunction is the first). Records are taken in order; a subscriber's
failure never fails a record (it goes to the notifications dead-letter queue), so only a ledger or
dead-letter write failure, or a record the deadline left untouched, is reported in `batchItemFailures`.
"""

from __future__ import annotations

import time
from typing import Any

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.dynamo_db_stream_event import DynamoDBRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from traderai.observability import logger, metrics, tracer
from traderai.services.broadcast import change_from_record
from traderai.services.notify import DEADLINE_MARGIN_SECONDS
from traderai.wiring import notifier

processor = BatchProcessor(event_type=EventType.DynamoDBStreams)


@logger.inject_lambda_context
@metrics.log_metrics(capture_cold_start_metric=True)
@tracer.capture_lambda_handler(capture_response=False)
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    deadline = time.monotonic() + context.get_remaining_time_in_millis() / 1000 - DEADLINE_MARGIN_SECONDS
    sender = notifier()

    def send(record: DynamoDBRecord) -> None:
        change = change_from_record(record.raw_event)
        if change is not None:
            sender.notify(change, deadline)

    try:
        return process_partial_response(event=event, record_handler=send, processor=processor, context=context)
    finally:
        sender.close()
