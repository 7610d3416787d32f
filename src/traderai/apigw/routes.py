"""Routing, as the template declares it: the HTTP API's routes and the WebSocket API's route keys."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote


@dataclass(frozen=True, slots=True)
class HttpRoute:
    """One HTTP API route of the template: method, path template, and whether it skips the authorizer."""

    method: str
    path: str  # /signals/{signal_id}
    function: str
    public: bool = False

    @property
    def route_key(self) -> str:
        return f"{self.method} {self.path}"

    def match(self, method: str, path: str) -> dict[str, str] | None:
        """Path parameters if this route takes the request, else None."""
        if method != self.method and self.method != "ANY":
            return None
        pattern = re.sub(r"\\\{(\w+)\\\}", r"(?P<\1>[^/]+)", re.escape(self.path))
        found = re.fullmatch(pattern, path)
        return {k: unquote(v) for k, v in found.groupdict().items()} if found else None


def http_routes(template: Mapping[str, Any]) -> list[HttpRoute]:
    """Every `HttpApi` event of every function in the template, as routes (the deployed route table).

    A route marked `Auth: {Authorizer: NONE}` is public; every other one goes through the API's
    `DefaultAuthorizer`."""
    routes = []
    for logical_id, spec in template.get("Resources", {}).items():
        if spec.get("Type") != "AWS::Serverless::Function":
            continue
        for event in (spec.get("Properties", {}).get("Events") or {}).values():
            if event.get("Type") != "HttpApi":
                continue
            props = event.get("Properties", {})
            public = (props.get("Auth") or {}).get("Authorizer") == "NONE"
            routes.append(HttpRoute(str(props["Method"]).upper(), str(props["Path"]), logical_id, public))
    return routes


def find_route(routes: list[HttpRoute], method: str, path: str) -> tuple[HttpRoute, dict[str, str]] | None:
    """The first route that takes this request, with its path parameters."""
    for route in routes:
        parameters = route.match(method, path)
        if parameters is not None:
            return route, parameters
    return None


def websocket_route_keys(template: Mapping[str, Any]) -> frozenset[str]:
    """The WebSocket API's route keys (`$connect`, `subscribe`, ...), as the template declares them."""
    return frozenset(spec["Properties"]["RouteKey"] for spec in template.get("Resources", {}).values()
                     if spec.get("Type") == "AWS::ApiGatewayV2::Route")


def select_route(body: str, route_keys: frozenset[str]) -> str:
    """`$request.body.action`: the message's `action` if it names a route, else `$default`."""
    try:
        message = json.loads(body)
    except (ValueError, RecursionError):  # RecursionError: nested deeper than the parser goes ("[" * 8000)
        return "$default"
    action = message.get("action") if isinstance(message, dict) else None
    return action if isinstance(action, str) and action in route_keys and not action.startswith("$") else "$default"
