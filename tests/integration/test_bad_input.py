"""Bad input of every shape: wrong events to every handler, a fuzzed HTTP API, bad WebSocket messages.

Expected: a clear error naming what was expected (never a bare KeyError/TypeError from deep inside);
the HTTP API never answers 5xx nor shows a stack trace; a bad WebSocket message is answered with an
error message and the connection stays.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from werkzeug.test import Client

from traderai import wiring
from traderai.adapters.api_keys import ApiKeyStore
from traderai.adapters.connections import ConnectionStore
from traderai.apigw.connections import ConnectionsServer
from traderai.apigw.http import HttpApi
from traderai.apigw.routes import http_routes, websocket_route_keys
from traderai.apigw.websocket import Connection, Handshake, WebSocketApi
from traderai.apigw.wsgi import HttpApiWsgi
from traderai.infra import TemplateError, load_template
from traderai.local.functions import LocalFunctions
from traderai.local.stack import merged_environment
from traderai.services import auth
from traderai.testing.handlers import FUNCTIONS_DIR, FakeLambdaContext, load_handler

GARBAGE: list[Any] = [None, [], "text", 42, 1.5, True, {}, {"foo": "bar"}, {"Records": "nope"},
                      {"requestContext": {}}, {"requestContext": {"http": {}}}, {"version": "2.0"},
                      {"detail-type": "Scheduled Event"}, {"responsePayload": None, "requestContext": {}}]
BARE_ERRORS = (KeyError, TypeError, AttributeError, IndexError)
HANDLER_DIRS = sorted(p.name for p in FUNCTIONS_DIR.iterdir() if (p / "app.py").is_file())
STACK_TRACE_MARKERS = ("Traceback", 'File "', "line ", "Error:")


def _function_of(directory: str) -> str:
    for logical_id, spec in load_template()["Resources"].items():
        code_uri = str(spec.get("Properties", {}).get("CodeUri", "")).rstrip("/")
        if spec["Type"] == "AWS::Serverless::Function" and code_uri.endswith(f"/{directory}"):
            return logical_id
    raise LookupError(directory)


def _environment(aws: Any, logical_id: str) -> dict[str, str]:
    """The function's template environment; names nobody provisioned get a placeholder."""
    values: dict[str, str] = {"MarketSource": "replay"}
    for _ in range(30):
        try:
            return aws.local.environment(logical_id, values)
        except TemplateError as exc:
            missing = str(exc).rsplit("'", 2)[-2]
            values[missing] = f"local-{missing.replace('.', '-').lower()}"
    raise AssertionError(f"{logical_id}: environment does not resolve")


@pytest.mark.parametrize("directory", HANDLER_DIRS)
def test_every_handler_refuses_wrong_shaped_events_clearly(aws: Any, monkeypatch: pytest.MonkeyPatch,
                                                           directory: str) -> None:
    for name, value in _environment(aws, _function_of(directory)).items():
        monkeypatch.setenv(name, value)
    wiring.clear()
    handler = load_handler(directory).handler
    for event in GARBAGE:
        try:
            reply = handler(copy.deepcopy(event), FakeLambdaContext())
        except BARE_ERRORS as exc:
            pytest.fail(f"{directory}: {event!r} raised a bare {type(exc).__name__}: {exc}")
        except Exception as exc:  # noqa: BLE001 - any other type is a refusal; it must say what it expected
            assert str(exc).strip(), f"{directory}: {event!r} raised {type(exc).__name__} without a message"
            continue
        # Not refused: only a well-defined no-op or an HTTP-style refusal is acceptable.
        status = reply.get("statusCode", 200) if isinstance(reply, dict) else 200
        assert status < 500, f"{directory}: {event!r} -> {reply!r}"


# ---------------------------------------------------------------- the HTTP API, fuzzed from its OpenAPI document

@pytest.fixture
def api_app(aws: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[HttpApiWsgi, str]]:
    """The demo's HTTP API in-process: the template's routes and authorizer, the events the local gateway
    builds, the functions invoked as `traderai local` invokes them, in one environment as there."""
    template = load_template()
    routes = http_routes(template)
    names = sorted({route.function for route in routes})  # ApiFunction, ChartFunction
    for name, value in merged_environment({fn: _environment(aws, fn) for fn in names}).items():
        monkeypatch.setenv(name, value)
    wiring.clear()
    key, record = auth.new_key("fuzzer", datetime.now(UTC))
    store = ApiKeyStore(aws.local.names["ApiKeysTable"])
    store.add(record)
    functions = LocalFunctions(template, names)
    functions.load()
    yield HttpApiWsgi(HttpApi(routes, functions.invoke, authorizer=auth.KeyAuthorizer(store))), key
    wiring.clear()


def _assert_no_trace(body: bytes) -> None:
    text = body.decode(errors="replace")
    assert not any(marker in text for marker in STACK_TRACE_MARKERS[:2]), text[:500]


def test_fuzzed_requests_never_get_a_5xx_or_a_stack_trace(api_app: tuple[HttpApiWsgi, str]) -> None:
    app, key = api_app
    schema = schemathesis.openapi.from_wsgi("/openapi.json", app)
    seen: dict[int, int] = {}

    for operation in schema.get_all_operations():
        strategy = operation.ok().as_strategy()

        @settings(max_examples=60, deadline=None, database=None, derandomize=True,  # stable in CI
                  suppress_health_check=list(HealthCheck))
        @given(case=strategy)
        def fuzz(case: Any) -> None:
            for headers in ({"authorization": f"Bearer {key}"}, {}):
                if not headers:  # no key at all (the document declares bearer auth: drop a generated one)
                    case.headers = {k: v for k, v in (case.headers or {}).items() if k.lower() != "authorization"}
                response = case.call(headers=headers)
                seen[response.status_code] = seen.get(response.status_code, 0) + 1
                case.validate_response(response, checks=[not_a_server_error])
                _assert_no_trace(response.content)

        fuzz()
    assert sum(seen.values()) >= 200 and all(status < 500 for status in seen)
    assert seen.get(401, 0) > 0  # the unauthenticated half was refused


@pytest.mark.parametrize(("path", "query"), [
    ("/signals", "limit=-1"), ("/signals", "limit=99999999999999999999"), ("/signals", "since=yesterday"),
    ("/signals", "next_token=" + "A" * 3000), ("/signals", "symbol=%00%ff"), ("/signals", "side=UP&side=DOWN"),
    ("/signals/" + "x" * 500, ""), ("/signals", "unknown=1"),
])
def test_hand_picked_nasty_requests_get_4xx_json(api_app: tuple[HttpApiWsgi, str], path: str, query: str) -> None:
    app, key = api_app
    response = Client(app).get(path, query_string=query, headers={"Authorization": f"Bearer {key}"})
    assert 400 <= response.status_code < 500, (path, query, response.status_code)
    assert "error" in json.loads(response.data)
    _assert_no_trace(response.data)


@pytest.mark.parametrize("path", ["/signals/%2e%2e%2f", "/nope", "/signals/a%2Fb"])
def test_a_path_no_route_takes_gets_api_gateways_own_404(api_app: tuple[HttpApiWsgi, str], path: str) -> None:
    # `/signals/../` and `/signals/a/b` match no route of the template: API Gateway answers before any function
    app, key = api_app
    response = Client(app).get(path, headers={"Authorization": f"Bearer {key}"})
    assert (response.status_code, json.loads(response.data)) == (404, {"message": "Not Found"})


@pytest.mark.parametrize(("headers", "status"), [({}, 401), ({"Authorization": "Bearer nope"}, 403)])
def test_the_api_refuses_missing_and_wrong_keys_but_health_stays_open(
    api_app: tuple[HttpApiWsgi, str], headers: dict[str, str], status: int
) -> None:
    app, _ = api_app
    client = Client(app)
    assert client.get("/signals", headers=headers).status_code == status
    assert client.get("/health", headers=headers).status_code == 200


# ---------------------------------------------------------------- WebSocket messages of every bad shape

def connections(aws: Any) -> ConnectionStore:
    return ConnectionStore(aws.local.names["ConnectionsTable"], aws.local.names["SubscriptionsTable"])


@pytest.fixture
def websocket(aws: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[WebSocketApi, list[Any], ConnectionsServer]]:
    """The demo's WebSocket API in-process: each message routed on its `action` as the local gateway routes it,
    WebSocketFunction invoked as `traderai local` invokes it (its replies kept), posting to `@connections`."""
    with ConnectionsServer() as gateway:
        for name, value in _environment(aws, "WebSocketFunction").items():
            monkeypatch.setenv(name, value)
        monkeypatch.setenv("WEBSOCKET_ENDPOINT", gateway.endpoint)
        wiring.clear()
        connections(aws).add("conn=", None, datetime.now(UTC))
        template = load_template()
        functions = LocalFunctions(template, ["WebSocketFunction"])
        functions.load()
        replies: list[Any] = []

        def invoke(logical_id: str, event: Any) -> Any:
            replies.append(functions.invoke(logical_id, event))
            return replies[-1]

        yield WebSocketApi(invoke, websocket_route_keys(template)), replies, gateway
        wiring.clear()


@pytest.mark.parametrize(("body", "code"), [
    ("not json", "malformed_json"), ("", "malformed_json"), ("[1, 2]", "malformed_json"),
    ('"a string"', "malformed_json"),
    ("{" * 5000, "malformed_json"), (json.dumps({"action": "x" * 10_000}), "message_too_large"),
    (json.dumps({"action": "dance"}), "unknown_action"), (json.dumps({"action": None}), "unknown_action"),
    (json.dumps({"action": 7}), "unknown_action"), (json.dumps({"action": "subscribe", "symbols": 5}), "bad_request"),
    (json.dumps({"action": "subscribe", "symbols": [1, 2]}), "bad_request"),
    (json.dumps({"action": "subscribe", "symbols": ["NOT A SYMBOL"]}), "bad_request"),
    (json.dumps({"action": "subscribe", "symbols": ["BTC/USDT"] * 51 + ["X" * 9]}), "bad_request"),
])
def test_a_bad_message_gets_an_error_message_and_the_connection_stays(
    aws: Any, websocket: tuple[WebSocketApi, list[Any], ConnectionsServer], body: str, code: str
) -> None:
    api, replies, gateway = websocket
    connection = Connection("conn=", Handshake("127.0.0.1:3001", "127.0.0.1"), datetime.now(UTC))
    assert api.message(connection, body) is None  # the function did not fail: no error frame from the gateway
    assert replies == [{"statusCode": 200}]
    (reply,) = gateway.messages("conn=")
    assert reply["type"] == "error" and reply["error"] == code
    assert connections(aws).get("conn=") is not None
