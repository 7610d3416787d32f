"""A WSGI app that does in-process what the HTTP API does: authorize, build a payload 2.0 event, invoke.

It lets HTTP tools (schemathesis, werkzeug's test client) drive the real ApiFunction handler exactly as
API Gateway would: routes in `OPEN_PATHS` skip the authorizer; for the others `authorize_http` decides
401/403 first, and an allowed request carries the authorizer's context in
`requestContext.authorizer.lambda`. No sockets; the local gateway (issue 4) serves the same over HTTP.
"""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl

from traderai.ports import KeyLookup
from traderai.services import auth

OPEN_PATHS = frozenset({"/health", "/openapi.json"})  # Auth: { Authorizer: NONE } in the template
Handler = Callable[[dict[str, Any], Any], dict[str, Any]]


def http_event(method: str, path: str, query: str, headers: dict[str, str], body: bytes,
               authorizer: dict[str, str] | None = None) -> dict[str, Any]:
    """An API Gateway HTTP API payload 2.0 event for one request."""
    now = datetime.now(UTC)
    pairs = parse_qsl(query, keep_blank_values=True)
    query_parameters: dict[str, str] = {}
    for name, value in pairs:  # API Gateway joins repeated parameters with commas
        query_parameters[name] = f"{query_parameters[name]},{value}" if name in query_parameters else value
    event: dict[str, Any] = {
        "version": "2.0", "routeKey": "$default", "rawPath": path, "rawQueryString": query,
        "headers": {name.lower(): value for name, value in headers.items()},
        "requestContext": {
            "accountId": "123456789012", "apiId": "local", "domainName": "localhost", "domainPrefix": "localhost",
            "http": {"method": method, "path": path, "protocol": "HTTP/1.1", "sourceIp": "127.0.0.1",
                     "userAgent": headers.get("user-agent", "")},
            "requestId": uuid.uuid4().hex, "routeKey": "$default", "stage": "$default",
            "time": now.strftime("%d/%b/%Y:%H:%M:%S +0000"), "timeEpoch": int(now.timestamp() * 1000)},
        "isBase64Encoded": bool(body),
    }
    if pairs:
        event["queryStringParameters"] = query_parameters
    if body:
        event["body"] = base64.b64encode(body).decode()
    if authorizer is not None:
        event["requestContext"]["authorizer"] = {"lambda": authorizer}
    return event


class ApiGatewayWsgi:
    """WSGI app: WSGI request -> (authorizer) -> payload 2.0 event -> `handler` -> WSGI response."""

    def __init__(self, handler: Handler, context: Any, keys: KeyLookup) -> None:
        self._handler = handler
        self._context = context
        self._keys = keys

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        headers = {key[5:].replace("_", "-").lower(): value for key, value in environ.items()
                   if key.startswith("HTTP_")}
        if environ.get("CONTENT_TYPE"):
            headers["content-type"] = environ["CONTENT_TYPE"]
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length) if length else b""
        path = environ.get("PATH_INFO") or "/"
        event = http_event(environ["REQUEST_METHOD"], path, environ.get("QUERY_STRING", ""), headers, body)
        if path not in OPEN_PATHS:
            result = auth.authorize_http(event, self._keys)
            if not result.allowed:
                return _reply(start_response, result.status, {"content-type": "application/json"},
                              json.dumps(result.error_body()).encode())
            event["requestContext"]["authorizer"] = {"lambda": result.context()}
        reply = self._handler(event, self._context)
        payload = reply.get("body") or ""
        data = base64.b64decode(payload) if reply.get("isBase64Encoded") else str(payload).encode()
        return _reply(start_response, int(reply.get("statusCode", 200)), reply.get("headers") or {}, data)


def _reply(start_response: Callable[..., Any], status: int, headers: dict[str, str], body: bytes) -> list[bytes]:
    start_response(f"{status} {_REASONS.get(status, 'Status')}", [*headers.items(), ("content-length", str(len(body)))])
    return [body]


_REASONS = {200: "OK", 400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found",
            405: "Method Not Allowed", 500: "Internal Server Error"}
