"""The event a request becomes is the same over the demo's sockets and in the fuzz tests' WSGI app.

One `LocalGateway` on free ports and one `HttpApiWsgi` share the template's routes, one authorizer and a
function that records its events; the same requests go to both (over a real socket, and through
werkzeug's client), and the two events must agree on everything but what differs per request or per
listener (request id and time, the client's address and the host name). The WebSocket side: the
`$connect` and message events the gateway sends over a real socket are the ones `WebSocketApi` builds.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
import requests
from local_stack import free_port
from websockets.sync.client import connect
from werkzeug.test import Client

from traderai.apigw.http import HttpApi
from traderai.apigw.routes import http_routes, websocket_route_keys
from traderai.apigw.wsgi import HttpApiWsgi
from traderai.infra import load_template
from traderai.local.gateway import GatewayConfig, LocalGateway
from traderai.services import auth

TEMPLATE = load_template()
ROUTES = http_routes(TEMPLATE)
PER_REQUEST = ("requestId", "time", "timeEpoch", "domainName", "domainPrefix")


class Keys:
    def __init__(self) -> None:
        self.key, self.record = auth.new_key("e2e", datetime(2025, 1, 1, tzinfo=UTC))

    def get(self, key_id: str) -> Any:
        return self.record if key_id == self.record.key_id else None


class Recorder:
    def __init__(self) -> None:
        self.events: list[tuple[str, dict[str, Any]]] = []

    def __call__(self, logical_id: str, event: dict[str, Any]) -> dict[str, Any]:
        self.events.append((logical_id, event))
        return {"statusCode": 200, "headers": {"Content-Type": "application/json"}, "body": "{}"}


@pytest.fixture(scope="module")
def keys() -> Keys:
    return Keys()


@pytest.fixture(scope="module")
def gateway(keys: Keys) -> Iterator[tuple[LocalGateway, Recorder]]:
    recorder = Recorder()
    gateway = LocalGateway(recorder, ROUTES, websocket_route_keys(TEMPLATE),
                           GatewayConfig(http_port=free_port(), ws_port=free_port()),
                           authorizer=auth.KeyAuthorizer(keys))
    gateway.start()
    try:
        yield gateway, recorder
    finally:
        gateway.stop()


def comparable(event: dict[str, Any]) -> dict[str, Any]:
    """The event less what differs per request or listener."""
    event = json.loads(json.dumps(event))
    context = event["requestContext"]
    for name in PER_REQUEST:
        context.pop(name, None)
    context["http"].pop("sourceIp")
    event["headers"] = {k: v for k, v in event["headers"].items()
                        if k not in ("host", "x-forwarded-for", "accept-encoding", "connection", "user-agent",
                                     "content-length", "accept")}
    context["http"].pop("userAgent")
    return event


@pytest.mark.parametrize(("path", "query"), [
    ("/signals", "symbol=BTC_USDT&side=LONG&side=SHORT&limit=5"), ("/signals/signal_BTC_USDT_1", "format=text"),
    ("/signals/signal_BTC_USDT_1/candles", ""), ("/performance", "days=30"), ("/health", ""), ("/openapi.json", ""),
    ("/signals", "since=&x=a+b&y=%00%FF&z=a%26b%3Dc&p=%2B1"),
])
def test_the_socket_and_the_wsgi_app_build_the_same_event(
        gateway: tuple[LocalGateway, Recorder], keys: Keys, path: str, query: str) -> None:
    local, recorder = gateway
    headers = {"Authorization": f"Bearer {keys.key}", "X-Trace": "t1", "Cookie": "a=1; b=2"}
    recorder.events.clear()
    reply = requests.get(f"{local.http_url}{path}?{query}" if query else f"{local.http_url}{path}",
                         headers=headers, timeout=10)
    assert reply.status_code == 200
    ((function, over_socket),) = recorder.events
    recorder.events.clear()
    app = HttpApiWsgi(HttpApi(ROUTES, recorder, authorizer=auth.KeyAuthorizer(keys)))
    assert Client(app, use_cookies=False).get(path, query_string=query, headers=headers).status_code == 200
    ((same_function, in_process),) = recorder.events
    assert function == same_function
    assert comparable(over_socket) == comparable(in_process)
    assert over_socket["routeKey"] != "$default" and over_socket["version"] == "2.0"


def test_an_escaped_separator_stays_in_its_value(gateway: tuple[LocalGateway, Recorder], keys: Keys) -> None:
    local, recorder = gateway
    recorder.events.clear()
    requests.get(f"{local.http_url}/signals?x=a+b&z=a%26b%3Dc&p=%2B1&p=2",
                 headers={"Authorization": f"Bearer {keys.key}"}, timeout=10)
    ((_, event),) = recorder.events
    assert event["queryStringParameters"] == {"x": "a b", "z": "a&b=c", "p": "+1,2"}
    assert event["rawQueryString"] == "x=a+b&z=a%26b%3Dc&p=%2B1&p=2"


def wait_for(condition: Any, seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.05)


def test_the_websocket_events_over_the_socket_are_websocketapis(gateway: tuple[LocalGateway, Recorder],
                                                                keys: Keys) -> None:
    local, recorder = gateway
    recorder.events.clear()
    with connect(f"{local.ws_url}?api_key={keys.key}", open_timeout=5) as socket:
        socket.send(json.dumps({"action": "ping"}))
        socket.send(json.dumps({"action": "dance"}))
        wait_for(lambda: len(recorder.events) >= 3)
    wait_for(lambda: len(recorder.events) >= 4)
    kinds = [(event["requestContext"]["routeKey"], event["requestContext"]["eventType"])
             for _, event in recorder.events]
    assert kinds == [("$connect", "CONNECT"), ("ping", "MESSAGE"), ("$default", "MESSAGE"),
                     ("$disconnect", "DISCONNECT")]
    assert {function for function, _ in recorder.events} == {"WebSocketFunction"}
    connect_event = recorder.events[0][1]
    assert connect_event["requestContext"]["authorizer"]["key_id"] == keys.record.key_id
    assert connect_event["queryStringParameters"] == {"api_key": keys.key}
    assert {e["requestContext"]["connectionId"] for _, e in recorder.events} == {
        connect_event["requestContext"]["connectionId"]}
    assert recorder.events[3][1]["requestContext"]["disconnectStatusCode"] == 1000
