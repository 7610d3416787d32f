"""The HTTP functions' error replies, in one place: domain errors, validation errors, no route, anything else.

Every error leaves as `api.ErrorBody` (`{"error": code, "message": ..., "details": [...]}`); an unexpected
exception is logged with its traceback and answered 500 without its text.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response, content_types
from aws_lambda_powertools.event_handler.exceptions import NotFoundError
from aws_lambda_powertools.event_handler.openapi.exceptions import RequestValidationError

from traderai.observability import logger
from traderai.services import api


def install(app: APIGatewayHttpResolver) -> None:
    """Map every error of `app` to its HTTP reply."""

    @app.exception_handler(api.ApiError)
    def domain_error(error: api.ApiError) -> Response[Any]:
        return error_reply(error.status_code, error.code, str(error))

    @app.exception_handler(RequestValidationError)
    def invalid_request(error: RequestValidationError) -> Response[Any]:
        details = [{"field": ".".join(str(p) for p in e["loc"][1:]), "message": e["msg"]} for e in error.errors()]
        return error_reply(400, "bad_request", api.validation_message(list(error.errors())), details)

    @app.not_found
    def no_route(_: NotFoundError) -> Response[Any]:
        return error_reply(404, "not_found", f"no route {app.current_event.http_method} {app.current_event.path}")

    @app.exception_handler(Exception)
    def unexpected(error: Exception) -> Response[Any]:
        logger.exception("Unhandled error")
        return error_reply(500, "internal_error", "internal error; the request id is in the logs")


def error_reply(status: int, code: str, message: str, details: list[dict[str, Any]] | None = None) -> Response[Any]:
    body = api.ErrorBody(error=code, message=message, details=details).model_dump(exclude_none=True)
    return Response(status, content_types.APPLICATION_JSON, body)
