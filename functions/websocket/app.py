"""WebSocketFunction: $connect, $disconnect, and client messages (subscribe, unsubscribe, ping, $default).

$connect answers 400 to refuse a bad `?symbols=` filter; every client message is answered by a
message posted back over `@connections`, and the connection always stays open.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from traderai import wiring
from traderai.adapters.push import PostResult, PushError, encode
from traderai.events import require_fields
from traderai.observability import logger, metrics, tracer
from traderai.services import websocket


@logger.inject_lambda_context(correlation_id_path="requestContext.requestId")
@metrics.log_metrics(capture_cold_start_metric=True)
@tracer.capture_lambda_handler(capture_response=False)
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    require_fields(event, ("requestContext.routeKey", "requestContext.connectionId"), "an API Gateway WebSocket event")
    request = websocket.WebSocketRequest.from_event(event)
    logger.append_keys(connection_id=request.connection_id, route=request.route_key)
    now = datetime.now(UTC)
    match request.route_key:
        case "$connect":
            try:
                websocket.connect(wiring.connection_store(), request, now)
            except websocket.BadMessage as exc:
                logger.info("Connection refused", extra={"reason": str(exc)})
                return {"statusCode": 400, "body": str(exc)}
        case "$disconnect":
            websocket.disconnect(wiring.connection_store(), request)
        case _:
            reply = websocket.reply_to(wiring.connection_store(), request, now)
            try:
                if wiring.pusher().post(request.connection_id, encode(reply)) == PostResult.GONE:
                    websocket.disconnect(wiring.connection_store(), request)
            except PushError as exc:  # the reply is lost, the connection is not: log it, stay open
                logger.warning("Reply not delivered", extra={"reason": exc.reason})
    return {"statusCode": 200}
