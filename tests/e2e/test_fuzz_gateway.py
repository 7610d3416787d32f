"""Bad input fuzzed over real sockets: `traderai local`'s gateway, its authorizer and the real handlers.

HTTP: schemathesis generates requests (schema-valid and schema-violating) from the OpenAPI document the
stack serves, with the development key: never a 5xx, never a stack trace, every 4xx JSON with a message.
Every route the template gives a key is refused without one (401) and with a wrong one (403); `/health`
and `/openapi.json` stay open.

WebSocket: every bad message API Gateway would deliver to the function (any text frame up to 128 KB) is
answered with an error message, and the connection stays up (a `ping` afterwards still gets its `pong`).
What API Gateway refuses itself, the gateway refuses the same way, documented in its quotas: a message
over 128 KB closes the connection with 1009 (Message Too Big) and a binary frame with 1003 (Unsupported
Data); the function never sees either, so no application message can come back. (The 32 KB per-frame
limit of the deployed API is not emulated: a single text frame up to 128 KB is accepted locally.)
"""

from __future__ import annotations

import json
import string
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from local_stack import Stack
from schemathesis import GenerationMode
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import ClientConnection, connect

from traderai.apigw.routes import http_routes
from traderai.apigw.websocket import MAX_WS_MESSAGE_BYTES
from traderai.infra import load_template

pytestmark = pytest.mark.slow

STACK_TRACE_MARKERS = ("Traceback", 'File "')
WRONG_KEYS = ("tai_0000000000000000_" + "x" * 43, "nope")
ROUTES = http_routes(load_template())
BROADCAST_TYPES = {"signal", "signal_update"}  # pushed by the pipeline whenever it likes; not replies
FUZZ = settings(
    max_examples=100,
    deadline=None,
    database=None,
    derandomize=True,  # stable in CI
    suppress_health_check=list(HealthCheck),
)
REPLY_TIMEOUT = 5.0

# aiohttp's HTTP parser refuses a longer request line with its own text/plain 400 before any route runs, as
# API Gateway refuses an over-long URL itself (the OpenAPI limits, e.g. next_token <= 2048, stay far below).
HTTP_PARSER_LINE_LIMIT = 8190

tried: Counter[str] = Counter()  # what was sent, by kind: the closing summary and the report


@pytest.fixture(scope="module", autouse=True)
def summary() -> Iterator[None]:
    yield
    print("\nfuzz_gateway tried:", dict(sorted(tried.items())))


@pytest.fixture(scope="module")
def http(stack: Stack) -> Iterator[requests.Session]:
    with requests.Session() as session:
        yield session


def request_line_length(request: requests.PreparedRequest) -> int:
    """`GET /path?query HTTP/1.1` in bytes, as the server reads it."""
    return len(f"{request.method} {request.path_url} HTTP/1.1".encode())


def assert_clean_reply(response: Any) -> None:
    """No 5xx, no stack trace; a 4xx is JSON with a sentence: the API's `ErrorBody` (`error` and `message`), or
    API Gateway's own `{"message": "Not Found"}` for a path no route takes (e.g. a signal id with `%2F`).

    `response` is a `requests.Response` or schemathesis' own (whose headers are lower-case lists)."""
    where = f"{response.request.method} {response.request.url} -> {response.status_code}"
    assert response.status_code < 500, f"{where}: {response.text[:500]}"
    assert not any(marker in response.text for marker in STACK_TRACE_MARKERS), f"{where}: {response.text[:500]}"
    if response.status_code >= 400:
        content_type = response.headers.get("content-type") or ""
        content_type = content_type if isinstance(content_type, str) else ",".join(content_type)
        assert content_type.startswith("application/json"), where
        body = response.json()
        assert isinstance(body, dict), where
        assert isinstance(body.get("message"), str) and body["message"], where
        assert isinstance(body.get("error", ""), str), where


# ---------------------------------------------------------------- the HTTP API, fuzzed from its OpenAPI document


@pytest.mark.parametrize("mode", list(GenerationMode), ids=lambda mode: mode.value)
def test_fuzzed_requests_never_get_a_5xx_or_a_stack_trace(
    stack: Stack, http: requests.Session, mode: GenerationMode
) -> None:
    schema = schemathesis.openapi.from_url(stack.http_url + "/openapi.json")
    headers = {"Authorization": f"Bearer {stack.dev_key}"}
    statuses: Counter[int] = Counter()
    for result in schema.get_all_operations():
        operation = result.ok()
        if mode is GenerationMode.NEGATIVE and not operation.query and not operation.path_parameters:
            continue  # nothing in the document to violate (GET /health)

        @FUZZ
        @given(case=operation.as_strategy(generation_mode=mode))
        def fuzz(case: Any) -> None:
            response = case.call(base_url=stack.http_url, session=http, headers=headers, timeout=10)
            statuses[response.status_code] += 1
            if request_line_length(response.request) > HTTP_PARSER_LINE_LIMIT:
                tried["http refused before routing"] += 1
                assert response.status_code == 400 and "Traceback" not in response.text
                return
            assert_clean_reply(response)

        fuzz()
    tried[f"http {mode.value}"] += statuses.total()
    assert statuses.total() >= 250, statuses
    if mode is GenerationMode.POSITIVE:
        assert statuses[200] > 0, statuses  # the key let the requests through to the handlers
    else:
        assert any(400 <= status < 500 for status in statuses), statuses


@pytest.mark.parametrize(
    "path",
    [
        "/signals/abc%0A",
        "/signals%0A",
        "/signals/a%2Fb",
        "/signals/a%00b",
        "/nope",
        "/signals/%C0%AF",
        "/signals/" + "x" * 129,
    ],
)
def test_hand_picked_paths_get_a_4xx_json_reply(stack: Stack, http: requests.Session, path: str) -> None:
    response = http.get(stack.http_url + path, headers={"Authorization": f"Bearer {stack.dev_key}"}, timeout=5)
    tried["http hand-picked"] += 1
    assert 400 <= response.status_code < 500
    assert_clean_reply(response)


def test_a_request_line_over_the_parser_limit_is_refused_before_routing(stack: Stack, http: requests.Session) -> None:
    response = http.get(stack.http_url + "/signals", params={"next_token": "A" * HTTP_PARSER_LINE_LIMIT}, timeout=5)
    tried["http hand-picked"] += 1
    assert response.status_code == 400 and "Traceback" not in response.text


def test_the_document_served_is_the_route_table_the_gateway_serves(stack: Stack) -> None:
    with urllib.request.urlopen(stack.http_url + "/openapi.json", timeout=5) as response:
        documented = set(json.loads(response.read())["paths"])
    assert documented | {"/openapi.json"} == {route.path for route in ROUTES}


@pytest.mark.parametrize("route", [r for r in ROUTES if not r.public], ids=lambda route: route.route_key)
@pytest.mark.parametrize(
    ("key", "status"), [(None, 401), *((key, 403) for key in WRONG_KEYS)], ids=["missing", "wrong", "garbage"]
)
def test_every_keyed_route_refuses_a_missing_or_wrong_key(
    stack: Stack, http: requests.Session, route: Any, key: str | None, status: int
) -> None:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    response = http.get(stack.http_url + route.path.replace("{signal_id}", "signal_x"), headers=headers, timeout=5)
    tried["http auth"] += 1
    assert response.status_code == status
    assert_clean_reply(response)
    assert response.json()["error"] == ("unauthorized" if status == 401 else "forbidden")


@pytest.mark.parametrize("route", [r for r in ROUTES if r.public], ids=lambda route: route.route_key)
def test_public_routes_answer_without_a_key(stack: Stack, http: requests.Session, route: Any) -> None:
    tried["http auth"] += 1
    assert http.get(stack.http_url + route.path, timeout=5).status_code == 200


HEADER_TEXT = st.text(alphabet=string.printable.strip() + " ", max_size=200)


@FUZZ
@given(
    authorization=st.one_of(
        HEADER_TEXT,
        HEADER_TEXT.map("Bearer {}".format),
        st.binary(max_size=60).map(lambda raw: "Bearer tai_" + raw.hex()),
    )
)
def test_a_fuzzed_credential_is_refused_with_401_or_403_never_a_5xx(
    stack: Stack, http: requests.Session, authorization: str
) -> None:
    response = http.get(stack.http_url + "/signals", headers={"Authorization": authorization}, timeout=5)
    tried["http fuzzed credential"] += 1
    assert response.status_code in (401, 403), (authorization, response.status_code)
    assert_clean_reply(response)


# ---------------------------------------------------------------- WebSocket messages of every bad shape


def open_socket(stack: Stack) -> ClientConnection:
    return connect(f"{stack.ws_url}?api_key={stack.dev_key}", open_timeout=5, max_size=None)


def reply(socket: ClientConnection) -> dict[str, Any]:
    """The next message that is not a pipeline broadcast: the answer to what was just sent."""
    deadline = time.monotonic() + REPLY_TIMEOUT
    while True:
        message = json.loads(socket.recv(timeout=max(0.01, deadline - time.monotonic())))
        if message.get("type") not in BROADCAST_TYPES:
            return message


def assert_still_up(socket: ClientConnection) -> None:
    socket.send(json.dumps({"action": "ping", "id": "after"}))
    assert reply(socket) | {"time": None} == {"type": "pong", "id": "after", "time": None}


@pytest.fixture(scope="module")
def socket(stack: Stack) -> Iterator[ClientConnection]:
    """One connection for the module: every bad message must leave it up for the next."""
    with open_socket(stack) as connection:
        yield connection


def connections(stack: Stack) -> int:
    with urllib.request.urlopen(stack.http_url + "/_local/status", timeout=5) as response:
        return json.loads(response.read())["connections"]


NESTED = {"a": {"b": {"c": [{"d": None}]}}}


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ("not json", "malformed_json"),
        ("", "malformed_json"),
        ("   ", "malformed_json"),
        ("[1, 2]", "malformed_json"),
        ('"subscribe"', "malformed_json"),
        ("null", "malformed_json"),
        ('{"action": "ping"', "malformed_json"),
        ("\x00", "malformed_json"),
        ("\ufeff{}", "malformed_json"),
        ("[" * 8000, "malformed_json"),
        ('{"a":' * 1600, "malformed_json"),  # nested deeper than the parser recurses
        ("x" * 100_000, "message_too_large"),
        (json.dumps({"action": "ping", "pad": "x" * 9000}), "message_too_large"),
        (json.dumps({"action": 5}), "unknown_action"),
        (json.dumps({"action": None}), "unknown_action"),
        (json.dumps({"symbols": ["BTC/USDT"]}), "unknown_action"),
        (json.dumps({"action": NESTED}), "unknown_action"),
        (json.dumps({"action": ["subscribe"]}), "unknown_action"),
        (json.dumps({"action": "dance"}), "unknown_action"),
        (json.dumps({"action": "$disconnect"}), "unknown_action"),
        (json.dumps({"action": "$connect"}), "unknown_action"),
        (json.dumps({"action": "SUBSCRIBE"}), "unknown_action"),
        (json.dumps({"action": "subscribe", "symbols": "BTC"}), "bad_request"),
        (json.dumps({"action": "subscribe", "symbols": [1, 2]}), "bad_request"),
        (json.dumps({"action": "subscribe", "symbols": NESTED}), "bad_request"),
        (json.dumps({"action": "subscribe", "symbols": [NESTED]}), "bad_request"),
        (json.dumps({"action": "subscribe", "symbols": []}), "bad_request"),
        (json.dumps({"action": "subscribe", "symbols": ["NOT A SYMBOL"]}), "bad_request"),
        (json.dumps({"action": "subscribe", "symbols": [f"C{n}/USDT" for n in range(51)]}), "bad_request"),
        (json.dumps({"action": "unsubscribe", "symbols": True}), "bad_request"),
    ],
    ids=lambda value: value[:30] if isinstance(value, str) else None,
)
def test_a_bad_message_gets_an_error_message_and_the_connection_stays(
    socket: ClientConnection, body: str, code: str
) -> None:
    socket.send(body)
    tried["ws bad shape"] += 1
    answer = reply(socket)
    assert answer["type"] == "error" and answer["error"] == code, answer
    assert answer["message"] and not any(marker in answer["message"] for marker in STACK_TRACE_MARKERS)
    assert_still_up(socket)


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12,
)
MESSAGES = st.one_of(
    st.text(max_size=300),
    JSON_VALUES.map(json.dumps),
    st.fixed_dictionaries(
        {"action": st.sampled_from(["subscribe", "unsubscribe", "ping"]) | JSON_VALUES},
        optional={"symbols": JSON_VALUES | st.lists(st.text(max_size=12), max_size=5), "id": JSON_VALUES},
    ).map(json.dumps),
)


@settings(FUZZ, max_examples=300)
@given(body=MESSAGES)
def test_any_text_message_gets_one_answer_and_the_connection_stays(socket: ClientConnection, body: str) -> None:
    socket.send(body)
    tried["ws fuzzed"] += 1
    answer = reply(socket)  # a failed function would answer {"message": "Internal server error", ...}, no type
    assert answer.get("type") in ("error", "pong", "subscribed", "unsubscribed"), (body, answer)
    socket.send(json.dumps({"action": "ping"}))
    assert reply(socket)["type"] == "pong"


def test_a_message_over_128_kb_closes_with_1009_as_api_gateway_does(stack: Stack) -> None:
    before = connections(stack)
    with open_socket(stack) as oversized:
        oversized.send("x" * 200_000)
        tried["ws oversize"] += 1
        with pytest.raises(ConnectionClosed) as closed:
            reply(oversized)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009  # Message Too Big
    assert MAX_WS_MESSAGE_BYTES == 128 * 1024
    _assert_gateway_unharmed(stack, before)


def test_a_binary_frame_closes_with_1003_as_api_gateway_does(stack: Stack) -> None:
    before = connections(stack)
    with open_socket(stack) as binary:
        binary.send(json.dumps({"action": "ping"}).encode())
        tried["ws binary"] += 1
        with pytest.raises(ConnectionClosed) as closed:
            reply(binary)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1003  # Unsupported Data
    assert closed.value.rcvd.reason
    _assert_gateway_unharmed(stack, before)


def _assert_gateway_unharmed(stack: Stack, connections_before: int) -> None:
    """The refused connection is gone from the gateway, and a new one works."""
    deadline = time.monotonic() + 5
    while connections(stack) > connections_before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert connections(stack) == connections_before
    with open_socket(stack) as fresh:
        assert_still_up(fresh)


@pytest.mark.parametrize(
    ("query", "status"), [("", 401), (f"?api_key={WRONG_KEYS[0]}", 403), ("?api_key=", 401), ("?api_key=%00%ff", 403)]
)
def test_the_websocket_handshake_refuses_a_missing_or_wrong_key(stack: Stack, query: str, status: int) -> None:
    tried["ws auth"] += 1
    with pytest.raises(InvalidStatus) as refused:
        connect(stack.ws_url + query, open_timeout=5).close()
    assert refused.value.response.status_code == status
