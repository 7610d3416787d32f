"""The one API Gateway emulation (`traderai.apigw`), without sockets: the events it builds and the rules
it applies are API Gateway's, whichever transport (the demo's aiohttp gateway, the fuzz tests' WSGI app)
hands it the request."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from typing import Any

import pytest
from werkzeug.test import EnvironBuilder

from traderai.apigw.connections import ConnectionsServer
from traderai.apigw.http import HttpApi, HttpRequest
from traderai.apigw.routes import http_routes, websocket_route_keys
from traderai.apigw.websocket import Connection, Handshake, WebSocketApi
from traderai.apigw.wsgi import HttpApiWsgi, wsgi_request
from traderai.infra import load_template
from traderai.services import auth
from traderai.testing.handlers import EVENTS_DIR, load_event

TEMPLATE = load_template()
ROUTES = http_routes(TEMPLATE)


class Keys:
    """An ApiKeys table of one key, in memory."""

    def __init__(self) -> None:
        self.key, self.record = auth.new_key("unit", datetime(2025, 1, 1, tzinfo=UTC))

    def get(self, key_id: str) -> Any:
        return self.record if key_id == self.record.key_id else None


class Functions:
    """Records every invocation; answers what it is told to."""

    def __init__(self, reply: Any = None, fail: bool = False) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.reply = {"statusCode": 200, "headers": {"Content-Type": "application/json"}, "body": "{}"} \
            if reply is None else reply
        self.fail = fail

    def __call__(self, logical_id: str, event: dict[str, Any]) -> Any:
        self.calls.append((logical_id, event))
        if self.fail:
            raise RuntimeError("the function failed")
        return self.reply


@pytest.fixture
def keys() -> Keys:
    return Keys()


def get(path: str, query: str = "", headers: tuple[tuple[str, str], ...] = (), body: bytes = b"") -> HttpRequest:
    return HttpRequest("GET", path, query, headers, body, "10.1.2.3", "127.0.0.1:3000")


# ---------------------------------------------------------------- HTTP API


def test_a_keyed_route_gets_the_payload_2_event_with_its_real_route_key_and_the_authorizers_context(
        keys: Keys) -> None:
    functions = Functions()
    api = HttpApi(ROUTES, functions, authorizer=auth.KeyAuthorizer(keys))
    request = get("/signals/signal_BTC_USDT_1", "side=LONG&side=SHORT&symbol=BTC%2FUSDT",
                  (("Authorization", f"Bearer {keys.key}"), ("X-Thing", "a"), ("x-thing", "b"),
                   ("Cookie", "a=1; b=2"), ("User-Agent", "unit")))
    reply = api.handle(request)
    assert reply is not None and reply.status == 200
    ((function, event),) = functions.calls
    assert function == "ApiFunction"
    assert event["version"] == "2.0" and event["routeKey"] == "GET /signals/{signal_id}"
    assert event["requestContext"]["routeKey"] == "GET /signals/{signal_id}"
    assert event["requestContext"]["stage"] == "$default"
    assert event["pathParameters"] == {"signal_id": "signal_BTC_USDT_1"}
    assert event["queryStringParameters"] == {"side": "LONG,SHORT", "symbol": "BTC/USDT"}
    assert event["rawQueryString"] == "side=LONG&side=SHORT&symbol=BTC%2FUSDT"
    assert event["headers"]["x-thing"] == "a,b" and "cookie" not in event["headers"]
    assert event["headers"]["x-forwarded-for"] == "10.1.2.3"
    assert event["cookies"] == ["a=1", "b=2"]
    assert event["requestContext"]["http"] == {"method": "GET", "path": "/signals/signal_BTC_USDT_1",
                                               "protocol": "HTTP/1.1", "sourceIp": "10.1.2.3", "userAgent": "unit"}
    assert event["requestContext"]["authorizer"] == {"lambda": {"key_id": keys.record.key_id, "key_name": "unit"}}
    assert event["isBase64Encoded"] is False and "body" not in event


@pytest.mark.parametrize("sample", sorted(p.name for p in EVENTS_DIR.glob("api_*.json")))
def test_the_sample_events_are_the_events_the_gateway_builds(keys: Keys, sample: str) -> None:
    # events/ holds what the handlers are tested with (and `sam local invoke -e` takes): the same shape
    expected = load_event(sample)
    context = expected["requestContext"]
    headers = (("Authorization", f"Bearer {keys.key}"), *expected["headers"].items())
    request = HttpRequest(context["http"]["method"], expected["rawPath"], expected["rawQueryString"], headers,
                          source_ip=context["http"]["sourceIp"], host=context["domainName"])
    functions = Functions()
    HttpApi(ROUTES, functions, authorizer=auth.KeyAuthorizer(keys)).handle(request)
    ((_, built),) = functions.calls
    assert set(built) == set(expected)
    assert set(built["requestContext"]) == set(context)
    for field in ("version", "routeKey", "rawPath", "rawQueryString", "pathParameters", "queryStringParameters",
                  "isBase64Encoded"):
        assert built.get(field) == expected.get(field), field
    assert built["requestContext"]["routeKey"] == context["routeKey"] == expected["routeKey"]
    assert built["requestContext"]["http"] == context["http"]
    assert set(built["requestContext"].get("authorizer", {}).get("lambda", {})) == set(
        context.get("authorizer", {}).get("lambda", {}))


@pytest.mark.parametrize(("headers", "status", "error"), [
    ((), 401, "unauthorized"), ((("Authorization", "Bearer nope"),), 403, "forbidden")])
def test_a_keyed_route_without_a_good_key_never_reaches_the_function(
        keys: Keys, headers: tuple[tuple[str, str], ...], status: int, error: str) -> None:
    functions = Functions()
    reply = HttpApi(ROUTES, functions, authorizer=auth.KeyAuthorizer(keys)).handle(get("/signals", "", headers))
    assert reply is not None and reply.status == status and json.loads(reply.body)["error"] == error
    assert functions.calls == []


@pytest.mark.parametrize("path", [route.path for route in ROUTES if route.public])
def test_the_routes_the_template_opens_skip_the_authorizer(keys: Keys, path: str) -> None:
    functions = Functions()
    reply = HttpApi(ROUTES, functions, authorizer=auth.KeyAuthorizer(keys)).handle(get(path))
    assert reply is not None and reply.status == 200
    ((_, event),) = functions.calls
    assert "authorizer" not in event["requestContext"]


def test_a_body_is_text_when_it_is_utf8_and_base64_otherwise() -> None:
    route = next(r for r in ROUTES if r.path == "/signals")
    functions = Functions()
    api = HttpApi([route], functions)
    api.handle(get("/signals", body="{\"é\": 1}".encode()))
    api.handle(get("/signals", body=b"\xff\x00"))
    (_, text), (_, binary) = functions.calls
    assert (text["body"], text["isBase64Encoded"]) == ("{\"é\": 1}", False)
    assert (base64.b64decode(binary["body"]), binary["isBase64Encoded"]) == (b"\xff\x00", True)


def test_the_integrations_reply_becomes_the_response_as_payload_2_says() -> None:
    reply = {"statusCode": 418, "headers": {"Content-Type": "text/plain"}, "cookies": ["a=1", "b=2"],
             "multiValueHeaders": {"X-Many": ["1", "2"]}, "body": base64.b64encode(b"teapot").decode(),
             "isBase64Encoded": True}
    response = HttpApi(ROUTES, Functions(reply)).handle(get("/health"))
    assert response is not None and (response.status, response.body) == (418, b"teapot")
    assert ("X-Many", "1,2") in response.headers and ("Content-Type", "text/plain") in response.headers
    assert [value for name, value in response.headers if name == "Set-Cookie"] == ["a=1", "b=2"]
    assert ("Access-Control-Allow-Origin", "*") in response.headers
    plain = HttpApi(ROUTES, Functions({"ok": True})).handle(get("/health"))  # no statusCode: JSON 200
    assert plain is not None and (plain.status, json.loads(plain.body)) == (200, {"ok": True})


def test_a_failed_function_is_api_gateways_500_and_no_route_is_its_404() -> None:
    api = HttpApi(ROUTES, Functions(fail=True))
    failed = api.handle(get("/health"))
    assert failed is not None and failed.status == 500
    assert json.loads(failed.body) == {"message": "Internal Server Error"}
    assert api.handle(get("/nope")) is None and api.handle(get("/signals/a/b")) is None
    assert api.handle(HttpRequest("POST", "/signals")) is None
    not_found = api.not_found()
    assert (not_found.status, json.loads(not_found.body)) == (404, {"message": "Not Found"})


def test_a_cors_preflight_is_answered_by_the_gateway() -> None:
    functions = Functions()
    reply = HttpApi(ROUTES, functions).handle(
        HttpRequest("OPTIONS", "/signals", headers=(("Access-Control-Request-Method", "GET"),)))
    assert reply is not None and reply.status == 204 and functions.calls == []
    assert ("Access-Control-Allow-Methods", "GET, OPTIONS") in reply.headers


def test_the_wsgi_app_hands_over_the_request_the_socket_server_would() -> None:
    environ = EnvironBuilder(path="/signals/caf%C3%A9", query_string="side=LONG&side=SHORT",
                             headers={"Authorization": "Bearer x", "X-Thing": "a"}, base_url="http://127.0.0.1:3000",
                             environ_base={"REMOTE_ADDR": "10.1.2.3"}).get_environ()
    request = wsgi_request(environ)
    assert (request.method, request.path, request.query_string) == ("GET", "/signals/café", "side=LONG&side=SHORT")
    assert (request.source_ip, request.host, request.header("authorization")) == ("10.1.2.3", "127.0.0.1:3000",
                                                                                   "Bearer x")
    environ["PATH_INFO"] = b"/signals/\xc0\xaf".decode("latin-1")  # PEP 3333: the decoded bytes, as latin-1
    bad = wsgi_request(environ)
    assert bad.path == "/signals/%C0%AF"  # not UTF-8: left percent-encoded, as aiohttp leaves it


def test_the_wsgi_app_answers_with_the_http_apis_reply(keys: Keys) -> None:
    functions = Functions()
    app = HttpApiWsgi(HttpApi(ROUTES, functions, authorizer=auth.KeyAuthorizer(keys)))
    started: list[Any] = []
    body = b"".join(app(EnvironBuilder(path="/nope").get_environ(), lambda *args: started.append(args)))
    assert started[0][0] == "404 Not Found" and json.loads(body) == {"message": "Not Found"}
    app(EnvironBuilder(path="/signals", headers={"Authorization": f"Bearer {keys.key}"}).get_environ(),
        lambda *args: started.append(args))
    assert started[1][0] == "200 OK" and functions.calls[0][1]["routeKey"] == "GET /signals"


# ---------------------------------------------------------------- WebSocket API


def connection(query: str = "") -> Connection:
    handshake = Handshake("127.0.0.1:3001", "10.1.2.3", (("Host", "127.0.0.1:3001"), ("User-Agent", "unit")), query)
    return Connection("conn-1=", handshake, datetime(2025, 1, 1, tzinfo=UTC))


def websocket_api(functions: Functions, keys: Keys | None = None) -> WebSocketApi:
    return WebSocketApi(functions, websocket_route_keys(TEMPLATE),
                        authorizer=auth.KeyAuthorizer(keys) if keys else None)


@pytest.mark.parametrize(("query", "status"), [("", 401), ("api_key=nope", 403)])
def test_connect_without_a_good_key_is_refused_before_the_function(keys: Keys, query: str, status: int) -> None:
    functions = Functions()
    refusal = websocket_api(functions, keys).connect(connection(query))
    assert refusal is not None and refusal.status == status and functions.calls == []


def test_connect_with_the_key_runs_connect_with_the_authorizers_context(keys: Keys) -> None:
    functions = Functions({"statusCode": 200})
    assert websocket_api(functions, keys).connect(connection(f"api_key={keys.key}")) is None
    ((function, event),) = functions.calls
    assert function == "WebSocketFunction"
    context = event["requestContext"]
    assert (context["routeKey"], context["eventType"], context["stage"]) == ("$connect", "CONNECT", "prod")
    assert context["connectionId"] == "conn-1=" and context["authorizer"]["key_id"] == keys.record.key_id
    assert event["queryStringParameters"] == {"api_key": keys.key}
    assert context["identity"] == {"sourceIp": "10.1.2.3", "userAgent": "unit"}


def test_a_connect_reply_outside_2xx_refuses_the_handshake() -> None:
    refusal = websocket_api(Functions({"statusCode": 429, "body": "slow down"})).connect(connection())
    assert refusal is not None and (refusal.status, refusal.body) == (429, b"slow down")


@pytest.mark.parametrize(("body", "route_key"), [
    ('{"action": "subscribe", "symbols": ["BTC/USDT"]}', "subscribe"), ('{"action": "ping"}', "ping"),
    ('{"action": "dance"}', "$default"), ('{"action": "$connect"}', "$default"), ("not json", "$default")])
def test_a_message_runs_on_the_route_its_action_selects(body: str, route_key: str) -> None:
    functions = Functions({"statusCode": 200})
    assert websocket_api(functions).message(connection(), body) is None
    ((_, event),) = functions.calls
    assert (event["requestContext"]["routeKey"], event["requestContext"]["eventType"]) == (route_key, "MESSAGE")
    assert event["body"] == body


def test_a_failed_message_is_answered_with_api_gateways_error_frame_and_disconnect_is_best_effort() -> None:
    api = websocket_api(Functions(fail=True))
    frame = json.loads(api.message(connection(), '{"action": "ping"}') or "{}")
    assert frame["message"] == "Internal server error" and frame["connectionId"] == "conn-1="
    api.disconnect(connection(), 1000, "client closed")  # raises nothing
    event = api.disconnect_event(connection(), 1001, "going away")
    assert event["requestContext"]["disconnectStatusCode"] == 1001 and event["headers"] == {"Host": "127.0.0.1:3001"}


# ---------------------------------------------------------------- @connections


class Peer:
    def __init__(self, alive: bool = True) -> None:
        self.alive, self.sent, self.closed = alive, [], False

    def send(self, body: bytes) -> bool:
        self.sent.append(body)
        return self.alive

    def close(self) -> None:
        self.closed = True


def attached(peer: Peer) -> ConnectionsServer:
    server = ConnectionsServer(connected=())
    server.attach("conn-1=", peer, source_ip="10.1.2.3", user_agent="unit",
                  connected_at=datetime(2025, 1, 1, tzinfo=UTC))
    return server


def test_a_post_reaches_the_live_socket_and_an_unknown_id_is_gone() -> None:
    peer = Peer()
    server = attached(peer)
    assert server.answer("POST", "conn-1=", b'{"type": "pong"}') == (200, None)
    assert peer.sent == [b'{"type": "pong"}'] and server.messages("conn-1=") == [{"type": "pong"}]
    assert server.answer("POST", "other=", b"{}") == (410, {"message": None, "__type": "GoneException"})


def test_a_socket_that_cannot_take_the_post_is_gone_from_then_on() -> None:
    server = attached(Peer(alive=False))
    assert server.answer("POST", "conn-1=", b"{}")[0] == 410
    assert not server.is_open("conn-1=") and server.live_count == 0


def test_a_post_over_128_kb_is_refused_and_the_socket_keeps_its_place() -> None:
    peer = Peer()
    server = attached(peer)
    status, payload = server.answer("POST", "conn-1=", b"x" * (128 * 1024 + 1))
    assert (status, payload and payload["__type"]) == (413, "PayloadTooLargeException") and peer.sent == []
    assert server.is_open("conn-1=")


def test_get_describes_the_socket_and_delete_closes_it() -> None:
    peer = Peer()
    server = attached(peer)
    status, description = server.answer("GET", "conn-1=")
    assert status == 200 and description is not None
    assert description["identity"] == {"sourceIp": "10.1.2.3", "userAgent": "unit"}
    assert description["connectedAt"] == "2025-01-01T00:00:00+00:00"
    assert server.answer("DELETE", "conn-1=") == (204, None) and peer.closed
    assert server.answer("GET", "conn-1=")[0] == 410 and server.answer("DELETE", "conn-1=")[0] == 410


def test_other_methods_and_paths_without_an_id() -> None:
    server = ConnectionsServer()
    assert server.answer("PUT", "x=")[0] == 405
    assert server.answer("POST", None) == (404, {"message": "Not Found"})
