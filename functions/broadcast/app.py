"""BroadcastFunction: new and changed signals from the Signals table's stream, pushed to WebSocket clients.

Records are processed in order with Powertools' BatchProcessor; a record whose push failed (other
than a gone connection, which is deleted) is reported in `batchItemFailures` and retried by Lambda.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.dynamo_db_stream_event import DynamoDBRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from traderai import wiring
from traderai.observability import logger, metrics, tracer
from traderai.services.broadcast import Broadcaster, change_from_record

processor = BatchProcessor(event_type=EventType.DynamoDBStreams)


@logger.inject_lambda_context
@metrics.log_metrics(capture_cold_start_metric=True)
@tracer.capture_lambda_handler(capture_response=False)
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    broadcaster = Broadcaster(wiring.connection_store(), wiring.pusher(), wiring.delivery_ledger())

    def push(record: DynamoDBRecord) -> None:
        change = change_from_record(record.raw_event)
        if change is not None:
            broadcaster.broadcast(change)

    return process_partial_response(event=event, record_handler=push, processor=processor, context=context)
