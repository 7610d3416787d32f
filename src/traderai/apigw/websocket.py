"""The WebSocket API: `$connect` behind its authorizer, each text message routed, `$disconnect`.

`WebSocketApi` builds the events API Gateway sends WebSocketFunction and applies its rules, without a
transport: `connect` authorizes the handshake (its `?api_key=` is the template's identity source) and
runs `$connect` (refused: the handshake's HTTP reply; accepted: None), `message` routes a text frame
on `$request.body.action` (`routes.select_route`) and runs it (a failed function: the error frame
API Gateway sends; the socket stays), `disconnect` runs `$disconnect` (best effort). What API Gateway
refuses before any function runs is the transport's to enforce: a binary frame closes the socket with
1003, a message over `MAX_WS_MESSAGE_BYTES` with 1009 (`traderai.local.gateway`).
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl

from traderai.apigw.connections import MAX_POST_BYTES
from traderai.apigw.http import API_ID, Authorizer, HttpReply, Invoke, grouped, joined, request_id, request_time
from traderai.apigw.routes import select_route

MAX_WS_MESSAGE_BYTES = MAX_POST_BYTES  # API Gateway's WebSocket message limit: one for a frame and a post


@dataclass(frozen=True, slots=True)
class Handshake:
    """The upgrade request that opened one connection."""

    host: str
    source_ip: str
    headers: tuple[tuple[str, str], ...] = ()  # as sent, repeats kept
    query_string: str = ""

    @property
    def user_agent(self) -> str:
        return next((value for key, value in self.headers if key.lower() == "user-agent"), "")


@dataclass(frozen=True, slots=True)
class Connection:
    """One connection as the WebSocket API knows it."""

    connection_id: str
    handshake: Handshake
    connected_at: datetime


class WebSocketApi:
    """The template's WebSocket API in front of its function."""

    def __init__(self, invoke: Invoke, route_keys: frozenset[str], *, function: str = "WebSocketFunction",
                 stage: str = "prod", authorizer: Authorizer | None = None) -> None:
        self.invoke = invoke
        self.route_keys = route_keys
        self.function = function
        self.stage = stage
        self.authorizer = authorizer

    def context(self, route_key: str, event_type: str, connection: Connection) -> dict[str, Any]:
        """The `requestContext` of one event on this connection."""
        now = datetime.now(UTC)
        rid = request_id()
        return {"routeKey": route_key, "eventType": event_type, "extendedRequestId": rid,
                "requestTime": request_time(now), "messageDirection": "IN", "stage": self.stage,
                "connectedAt": int(connection.connected_at.timestamp() * 1000),
                "requestTimeEpoch": int(now.timestamp() * 1000), "requestId": rid,
                "domainName": connection.handshake.host, "connectionId": connection.connection_id, "apiId": API_ID,
                "identity": {"sourceIp": connection.handshake.source_ip,
                             "userAgent": connection.handshake.user_agent}}

    def connect_event(self, connection: Connection) -> dict[str, Any]:
        """The `$connect` event: handshake headers and query string, no body."""
        headers = grouped(connection.handshake.headers)
        query = grouped(parse_qsl(connection.handshake.query_string, keep_blank_values=True))
        event: dict[str, Any] = {"requestContext": self.context("$connect", "CONNECT", connection),
                                 "isBase64Encoded": False, "headers": joined(headers), "multiValueHeaders": headers}
        if query:
            event["queryStringParameters"] = joined(query)
            event["multiValueQueryStringParameters"] = query
        return event

    def message_event(self, connection: Connection, body: str) -> dict[str, Any]:
        """A text message's event, on the route its `action` selects."""
        context = self.context(select_route(body, self.route_keys), "MESSAGE", connection)
        context["messageId"] = request_id()
        return {"requestContext": context, "body": body, "isBase64Encoded": False}

    def disconnect_event(self, connection: Connection, code: int, reason: str) -> dict[str, Any]:
        context = self.context("$disconnect", "DISCONNECT", connection)
        context |= {"disconnectStatusCode": code, "disconnectReason": reason}
        return {"requestContext": context, "isBase64Encoded": False, "headers": {"Host": connection.handshake.host}}

    def connect(self, connection: Connection) -> HttpReply | None:
        """Authorize and run `$connect`: None to accept the handshake, else the reply that refuses it."""
        event = self.connect_event(connection)
        if self.authorizer is not None:
            result = self.authorizer.authorize_websocket(event)
            if not result.allowed:
                return HttpReply.json(result.error_body(), result.status)
            event["requestContext"]["authorizer"] = result.context()
        try:
            reply = self.invoke(self.function, event)
        except Exception:  # noqa: BLE001 - API Gateway refuses the handshake when $connect fails
            return HttpReply.json({"message": "Internal server error"}, 500)
        status = int(reply.get("statusCode", 200)) if isinstance(reply, dict) else 200
        if not 200 <= status < 300:
            body = str(reply.get("body") or "") if isinstance(reply, dict) else ""
            return HttpReply(status, [("Content-Type", "text/plain; charset=utf-8")], body.encode())
        return None

    def message(self, connection: Connection, body: str) -> str | None:
        """Run one text message; the frame API Gateway sends back when the function fails, else None."""
        event = self.message_event(connection, body)
        try:
            self.invoke(self.function, event)
        except Exception:  # noqa: BLE001 - as deployed: the client gets an error frame, the socket stays
            return json.dumps({"message": "Internal server error", "connectionId": connection.connection_id,
                               "requestId": event["requestContext"]["requestId"]})
        return None

    def disconnect(self, connection: Connection, code: int, reason: str) -> None:
        """Run `$disconnect`: best effort, as on API Gateway (a failure is not reported anywhere)."""
        with contextlib.suppress(Exception):
            self.invoke(self.function, self.disconnect_event(connection, code, reason))
