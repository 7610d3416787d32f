"""AuthorizerFunction: the Lambda REQUEST authorizer of the HTTP API and of the WebSocket `$connect` route.

HTTP API (payload 2.0, simple responses): `{"isAuthorized": ..., "context": ...}`; a refusal is a 403.
WebSocket: an IAM policy allowing or denying the connect (deny -> 403); no `api_key` -> 401. API Gateway
answers 401 itself when the identity source is missing; the same checks here cover a direct call.
Logs carry the key id and the reason, never the key.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from traderai import wiring
from traderai.events import EventError
from traderai.observability import logger, metrics, tracer
from traderai.services import auth


@logger.inject_lambda_context(correlation_id_path="requestContext.requestId")
@metrics.log_metrics(capture_cold_start_metric=True)
@tracer.capture_lambda_handler(capture_response=False)
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    if not isinstance(event, dict) or event.get("type") != "REQUEST":
        raise EventError("expected an API Gateway REQUEST authorizer event (HTTP API payload 2.0 or WebSocket)")
    if "methodArn" in event:  # WebSocket $connect
        result = auth.authorize_websocket(event, wiring.api_key_store())
        reply: dict[str, Any] | None = None if result.status == 401 else auth.websocket_policy(
            result, event["methodArn"])
    elif event.get("version") == "2.0" and "routeArn" in event:  # HTTP API
        result = auth.authorize_http(event, wiring.api_key_store())
        reply = auth.http_simple_response(result)
    else:
        raise EventError("REQUEST authorizer event without methodArn (WebSocket) or version 2.0 routeArn (HTTP)")
    logger.info("Authorization", extra={"allowed": result.allowed, "reason": result.reason,
                                        "key_id": result.key_id, "status": result.status})
    if not result.allowed:
        metrics.add_metric(name="AuthRefused", unit=MetricUnit.Count, value=1)
    if reply is None:
        raise auth.Unauthorized
    return reply
