"""ChartFunction: GET /signals/{signal_id}/candles, a signal's candles with its levels and hit marks.

Its own function because it reads the market (ccxt and numpy, the predict layer), which the read API's
function does not carry. Errors leave as every HTTP function's do (`services.http_errors`).
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from traderai.events import require_fields
from traderai.observability import logger, metrics, tracer
from traderai.routes import chart
from traderai.services import http_errors

app = APIGatewayHttpResolver(enable_validation=True)
app.include_router(chart.router)
http_errors.install(app)


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP)
@metrics.log_metrics(capture_cold_start_metric=True)
@tracer.capture_lambda_handler(capture_response=False)
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    require_fields(event, ("requestContext.http.method", "rawPath"), "an HTTP API (payload 2.0) event")
    return app.resolve(event, context)
