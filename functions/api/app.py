"""ApiFunction: GET /signals, GET /signals/{signal_id}, GET /health and GET /openapi.json (HTTP API).

Parameters are validated by Powertools from the type hints below, which also generate the OpenAPI
document; every error, ours or the validator's, leaves through the exception handlers at the end.

On Lambda (AWS_LAMBDA_RUNTIME_API set) the garbage collector is paused while this module loads, and what
the load created is then frozen out of every later collection (`gc.freeze`): all of it lives as long as the
container, so the collector's passes during the load (~15 ms) and the first full collection after it (~20-30
ms of the first request, walking the ~88,000 objects then alive) found next to nothing to free (about 360
objects, which now stay for the container's life). Tests and the local stack, which load
many handlers in one process, keep the collector as it is.
"""

from __future__ import annotations

# ruff: noqa: E402 (the imports follow the collector's pause)
import gc
import os

_PAUSED = "AWS_LAMBDA_RUNTIME_API" in os.environ and gc.isenabled()
if _PAUSED:
    gc.disable()  # until the end of this module

import json
from functools import lru_cache
from typing import TYPE_CHECKING, Annotated, Any, Literal

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response, content_types
from aws_lambda_powertools.event_handler.openapi.params import Path, Query
from aws_lambda_powertools.logging import correlation_paths
from pydantic import BeforeValidator

from traderai import __version__, wiring
from traderai.contracts import Side, Signal, SignalStatus
from traderai.core.text_format import signal_text
from traderai.events import require_fields
from traderai.observability import logger, metrics, tracer
from traderai.routes import performance
from traderai.services import api, http_errors

if TYPE_CHECKING:  # the handler's annotation only
    from aws_lambda_powertools.utilities.typing import LambdaContext

app = APIGatewayHttpResolver(enable_validation=True)
app.include_router(performance.router)  # GET /performance
http_errors.install(app)
KEYED: list[dict[str, list[str]]] = [{"apiKey": []}]
_upper = BeforeValidator(lambda v: v.upper() if isinstance(v, str) else v)
_plus = BeforeValidator(lambda v: v.replace(" ", "+") if isinstance(v, str) else v)  # an unescaped '+'


@app.get("/signals", summary="List signals, newest first", security=KEYED,
         responses=api.responses(api.ok_json(api.SignalPage, "One page of signals, newest first")))
def list_signals(
    symbol: Annotated[str | None, Query(pattern=api.SYMBOL_PATTERN, description="BTC/USDT, BTC_USDT or BTC-USDT")
                      ] = None,
    side: Annotated[Side | None, _upper, Query(description="LONG or SHORT (any case)")] = None,
    status: Annotated[SignalStatus | None, _upper, Query(description="e.g. ACTIVE")] = None,
    tradeable: Annotated[bool | None, Query(description=(
        "true: tradeable signals only (EV filter, edge gate and protections passed); false: paper signals only"))
    ] = None,
    since: Annotated[str | None, _plus, Query(json_schema_extra=api.DATE_TIME_SCHEMA,
                                              description="created_at >= since (RFC 3339, with a zone); "
                                                          "at most until")] = None,
    until: Annotated[str | None, _plus, Query(json_schema_extra=api.DATE_TIME_SCHEMA,
                                              description="created_at <= until (RFC 3339, with a zone)")] = None,
    limit: Annotated[int, Query(ge=1, le=api.MAX_LIMIT)] = api.DEFAULT_LIMIT,
    next_token: Annotated[str | None, Query(max_length=2048, pattern=api.NEXT_TOKEN_PATTERN,
                                            description="From the previous page, with the same filters (a "
                                                        "token this API did not issue is a 400)")] = None,
) -> api.SignalPage:
    api.reject_unknown_parameters(app.current_event.query_string_parameters, api.LIST_PARAMETERS)
    filters = api.signal_filters(symbol, side, status, api.parse_date_time("since", since),
                                 api.parse_date_time("until", until), tradeable)
    return api.list_signals(wiring.signal_store(), wiring.page_tokens(), filters, limit, next_token)


@app.get("/signals/<signal_id>", summary="One signal by id (?format=text: the signal-channel post)", security=KEYED,
         responses=api.responses({"description": "The signal", "content": {
             "application/json": {"model": Signal}, "text/plain": {"schema": {"type": "string"}}}}, not_found=True))
def get_signal(signal_id: Annotated[str, Path(pattern=api.SIGNAL_ID.pattern, min_length=1, max_length=128)],
               format_: Annotated[Literal["json", "text"], Query(alias="format")] = "json") -> Signal | str:
    signal = api.get_signal(wiring.signal_store(), signal_id)
    if format_ == "text":
        return Response(200, content_types.TEXT_PLAIN, signal_text(signal))
    return signal


@app.get("/health", summary="Liveness",
         responses=api.responses(api.ok_json(api.Health, "The service answers"), keyed=False, parameters=False))
def health() -> api.Health:
    return api.Health(status="ok", service="traderai", version=__version__)


@lru_cache(maxsize=1)
def openapi_json() -> str:
    """The OpenAPI document this function serves (and docs/openapi.json holds). Configured here, at the first
    GET /openapi.json, not at import: the OpenAPI models it needs cost ~0.1 s to import, and request
    validation never loads them. GET /signals/{signal_id}/candles is documented here too: API Gateway sends it
    to ChartFunction, so this function includes its route only for the document, when the document is asked."""
    from aws_lambda_powertools.event_handler.openapi.models import HTTPBearer  # see above: this route's alone

    from traderai.routes import chart  # see above: the document's alone (~5 ms of import)

    app.include_router(chart.router)
    app.configure_openapi(title="TraderAI API", version=__version__,
                          description="Crypto trading signals: list, fetch, and the service's health.",
                          security_schemes={"apiKey": HTTPBearer(description="Authorization: Bearer tai_... "
                                                                              "(`traderai keys create`)")})
    return json.dumps(api.tidy_openapi(json.loads(app.get_openapi_json_schema())), indent=2)


@app.get("/openapi.json", include_in_schema=False)
def openapi() -> Response[str]:
    return Response(200, content_types.APPLICATION_JSON, openapi_json())


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP)
@metrics.log_metrics(capture_cold_start_metric=True)
@tracer.capture_lambda_handler(capture_response=False)
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    require_fields(event, ("requestContext.http.method", "rawPath"), "an HTTP API (payload 2.0) event")
    return app.resolve(event, context)



if _PAUSED:  # the module is loaded: see the docstring
    gc.freeze()
    gc.enable()
