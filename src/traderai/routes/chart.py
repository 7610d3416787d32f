"""GET /signals/{signal_id}/candles: served by ChartFunction, included by ApiFunction for the OpenAPI document.

Nothing here imports numpy or ccxt at import time: the chart's market source is built by
`traderai.wiring.chart_runtime` at the first request, in ChartFunction only.
"""

from __future__ import annotations

from typing import Annotated

from aws_lambda_powertools.event_handler.api_gateway import Router
from aws_lambda_powertools.event_handler.openapi.params import Path

from traderai import wiring
from traderai.services import api, chart

router = Router()


@router.get("/signals/<signal_id>/candles", summary="A signal's candles, levels and hit marks (its chart)",
            security=[{"apiKey": []}],
            responses=api.responses(api.ok_json(chart.SignalChart, "The signal's chart"), not_found=True) | {
                502: {"description": "The market's candles could not be fetched",
                      "content": {"application/json": {"model": api.ErrorBody}}}})
def get_signal_candles(
    signal_id: Annotated[str, Path(pattern=api.SIGNAL_ID.pattern, min_length=1, max_length=128)],
) -> chart.SignalChart:
    api.reject_unknown_parameters(router.current_event.query_string_parameters, frozenset())
    signal = api.get_signal(wiring.signal_store(), signal_id)  # 400 / 404 before any market is touched
    runtime = wiring.chart_runtime()
    return chart.signal_chart(signal, runtime.history, runtime.source, wiring.now(), runtime.loop)
