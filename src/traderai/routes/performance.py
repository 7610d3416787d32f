"""GET /performance (included by ApiFunction): the query parameters, validated, to `services.performance`."""

from __future__ import annotations

from typing import Annotated, Literal

from aws_lambda_powertools.event_handler.api_gateway import Router
from aws_lambda_powertools.event_handler.openapi.params import Query
from pydantic import BeforeValidator

from traderai import wiring
from traderai.services import api, performance

router = Router()
_plus = BeforeValidator(lambda v: v.replace(" ", "+") if isinstance(v, str) else v)  # an unescaped '+'


@router.get("/performance", summary="Track record: win rate, exits, realised profit, expectancy, drawdown",
            security=[{"apiKey": []}],
            responses=api.responses(api.ok_json(performance.PerformanceReport, "The track record of the window")))
def get_performance(
    since: Annotated[str | None, _plus, Query(json_schema_extra=api.DATE_TIME_SCHEMA,
                                              description="created_at >= since (RFC 3339; default: until - 30d); "
                                                          "at most until, at most 366 days before it, and not "
                                                          "with window")] = None,
    until: Annotated[str | None, _plus, Query(json_schema_extra=api.DATE_TIME_SCHEMA,
                                              description="created_at <= until (RFC 3339; default: now)")] = None,
    window: Annotated[Literal["7d", "30d", "90d", "all"] | None,
                      Query(description="the named window ending at until (instead of since)")] = None,
) -> performance.PerformanceReport:
    api.reject_unknown_parameters(router.current_event.query_string_parameters, performance.PARAMETERS)
    return performance.performance(wiring.signal_store(), api.parse_date_time("since", since),
                                   api.parse_date_time("until", until), wiring.now(), window=window,
                                   strategy=wiring.strategy())
