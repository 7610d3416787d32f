"""The HTTP API: a request becomes the payload 2.0 event, the authorizer runs, the reply becomes the response.

`HttpApi.handle` does what API Gateway's HTTP API does between the socket and the function, for the
routes of the template (`routes.http_routes`): the CORS preflight (the template's `CorsConfiguration`),
the route match (no route: API Gateway's own 404 `{"message": "Not Found"}`), the payload 2.0 event
(`version` "2.0", the route's real `routeKey`, headers lower-cased with repeats joined by commas,
cookies apart, the query string's repeats joined by commas, path parameters, the body as text, or
base64 when it is not UTF-8), the authorizer before every route not marked `Authorizer: NONE` (its
context in `requestContext.authorizer.lambda`), then the integration: a reply with `statusCode` is the
response, anything else is JSON 200, and a function that fails is API Gateway's 500.

It knows no transport: the local gateway (aiohttp, `traderai.local.gateway`) and the WSGI app
(`apigw.wsgi`, schemathesis in-process) both hand it an `HttpRequest` and send back its `HttpReply`,
so the fuzz tests send the very event the demo sends.
"""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol
from urllib.parse import parse_qsl

from traderai.apigw.routes import HttpRoute, find_route
from traderai.testing.handlers import ACCOUNT_ID

API_ID = "local"
MAX_HTTP_BODY_BYTES = 10 * 1024 * 1024  # HTTP API payload limit
JSON_TYPE = "application/json; charset=utf-8"

Invoke = Callable[[str, Any], Any]
"""(logical_id, event) -> the function's reply; raises when the function fails."""


class AuthResult(Protocol):
    """What an authorizer answers (see `traderai.services.auth.AuthResult`)."""

    @property
    def allowed(self) -> bool: ...

    @property
    def status(self) -> int: ...

    def context(self) -> dict[str, str]: ...

    def error_body(self) -> dict[str, str]: ...


class Authorizer(Protocol):
    """The authorizer hook, called as API Gateway calls a Lambda authorizer: before the HTTP route's
    integration and before `$connect`. `traderai.services.auth.KeyAuthorizer` is exactly that."""

    def authorize_http(self, event: Mapping[str, Any]) -> AuthResult: ...

    def authorize_websocket(self, event: Mapping[str, Any]) -> AuthResult: ...


def request_id() -> str:
    """An id shaped like API Gateway's (16 URL-safe characters)."""
    return base64.urlsafe_b64encode(uuid.uuid4().bytes[:12]).decode()


def request_time(moment: datetime) -> str:
    return moment.strftime("%d/%b/%Y:%H:%M:%S +0000")


def grouped(pairs: Iterable[tuple[str, str]], *, lower: bool = False) -> dict[str, list[str]]:
    """Repeated names kept together, in order (header names lower-cased when `lower`)."""
    groups: dict[str, list[str]] = {}
    for key, value in pairs:
        groups.setdefault(key.lower() if lower else key, []).append(value)
    return groups


def joined(groups: Mapping[str, list[str]]) -> dict[str, str]:
    """API Gateway's single-valued form: repeats joined with commas."""
    return {key: ",".join(values) for key, values in groups.items()}


@dataclass(frozen=True, slots=True)
class HttpRequest:
    """One request as it came off the socket: what the event is built from."""

    method: str
    path: str  # as the server decoded it
    query_string: str = ""  # raw, as sent
    headers: tuple[tuple[str, str], ...] = ()  # as sent, repeats kept
    body: bytes = b""
    source_ip: str = "127.0.0.1"
    host: str = "localhost"
    protocol: str = "HTTP/1.1"

    def header(self, name: str, default: str = "") -> str:
        """The first value of a header (case-insensitive)."""
        return next((value for key, value in self.headers if key.lower() == name.lower()), default)

    def has_header(self, name: str) -> bool:
        return any(key.lower() == name.lower() for key, _ in self.headers)


@dataclass(frozen=True, slots=True)
class HttpReply:
    """What goes back to the client: status, headers (repeats kept, e.g. Set-Cookie), body."""

    status: int
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""

    @classmethod
    def json(cls, payload: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> HttpReply:
        return cls(status, [("Content-Type", JSON_TYPE), *(headers or {}).items()], json.dumps(payload).encode())


def http_event(request: HttpRequest, route: HttpRoute, parameters: Mapping[str, str], *,
               now: datetime | None = None) -> dict[str, Any]:
    """The API Gateway v2 HTTP event (payload format 2.0) for this request on this route."""
    now = now or datetime.now(UTC)
    headers = joined(grouped(request.headers, lower=True))
    cookies = [c.strip() for c in headers.pop("cookie", "").split(";") if c.strip()]
    query = joined(grouped(parse_qsl(request.query_string, keep_blank_values=True)))
    event: dict[str, Any] = {
        "version": "2.0", "routeKey": route.route_key, "rawPath": request.path,
        "rawQueryString": request.query_string, "headers": headers | {"x-forwarded-for": request.source_ip},
        "requestContext": {
            "accountId": ACCOUNT_ID, "apiId": API_ID, "domainName": request.host,
            "domainPrefix": request.host.split(".")[0], "requestId": request_id(),
            "routeKey": route.route_key, "stage": "$default", "time": request_time(now),
            "timeEpoch": int(now.timestamp() * 1000),
            "http": {"method": request.method, "path": request.path, "protocol": request.protocol,
                     "sourceIp": request.source_ip, "userAgent": request.header("User-Agent")}},
        "isBase64Encoded": False,
    }
    if cookies:
        event["cookies"] = cookies
    if query:
        event["queryStringParameters"] = query
    if parameters:
        event["pathParameters"] = dict(parameters)
    if request.body:
        try:
            event["body"] = request.body.decode()
        except UnicodeDecodeError:
            event["body"], event["isBase64Encoded"] = base64.b64encode(request.body).decode(), True
    return event


def integration_response(reply: Any, extra_headers: Mapping[str, str] | None = None) -> HttpReply:
    """Payload 2.0 response rules: a dict with `statusCode` is the response; anything else is JSON 200."""
    extra = dict(extra_headers or {})
    if not (isinstance(reply, dict) and "statusCode" in reply):
        return HttpReply.json(reply, headers=extra)
    headers = extra | {k: str(v) for k, v in (reply.get("headers") or {}).items()}
    for key, values in (reply.get("multiValueHeaders") or {}).items():
        headers[key] = ",".join(str(v) for v in values)
    body = reply.get("body") or ""
    raw = base64.b64decode(body) if reply.get("isBase64Encoded") else str(body).encode()
    cookies = [("Set-Cookie", str(cookie)) for cookie in reply.get("cookies") or []]
    return HttpReply(int(reply["statusCode"]), [*headers.items(), *cookies], raw)


class HttpApi:
    """The HTTP API of the template in front of its functions, without a transport."""

    def __init__(self, routes: list[HttpRoute], invoke: Invoke, *, authorizer: Authorizer | None = None,
                 cors_origin: str = "*") -> None:
        self.routes = routes
        self.invoke = invoke
        self.authorizer = authorizer
        self.cors_origin = cors_origin

    def cors(self) -> dict[str, str]:
        return {"Access-Control-Allow-Origin": self.cors_origin}

    def handle(self, request: HttpRequest) -> HttpReply | None:
        """The reply for a preflight or a routed request; None when no route takes it (the caller may
        serve something else, else `not_found()`). Blocks while the authorizer and the function run."""
        if request.method == "OPTIONS" and request.has_header("Access-Control-Request-Method"):
            return HttpReply(204, [*self.cors().items(), ("Access-Control-Allow-Methods", "GET, OPTIONS"),
                                   ("Access-Control-Max-Age", "600"),
                                   ("Access-Control-Allow-Headers", "content-type, authorization")])
        found = find_route(self.routes, request.method, request.path)
        if found is None:
            return None
        route, parameters = found
        event = http_event(request, route, parameters)
        if not route.public and self.authorizer is not None:
            result = self.authorizer.authorize_http(event)
            if not result.allowed:
                return HttpReply.json(result.error_body(), result.status, self.cors())
            event["requestContext"]["authorizer"] = {"lambda": result.context()}
        try:
            reply = self.invoke(route.function, event)
        except Exception:  # noqa: BLE001 - a failed integration is API Gateway's 500, as deployed
            return HttpReply.json({"message": "Internal Server Error"}, 500, self.cors())
        return integration_response(reply, self.cors())

    def not_found(self) -> HttpReply:
        """API Gateway's answer to a request no route takes."""
        return HttpReply.json({"message": "Not Found"}, 404, self.cors())
