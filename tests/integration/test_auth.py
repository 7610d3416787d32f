"""API keys: stored hashed, checked by the REQUEST authorizer for the HTTP API and WebSocket `$connect`.

Missing credential -> 401, wrong one -> 403 (malformed, unknown id, wrong secret, revoked); no key
ever reaches a log, a reply, a table or a file in the repository.
"""

from __future__ import annotations

import copy
import json
import logging
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from traderai import wiring
from traderai.adapters.api_keys import ApiKeyStore
from traderai.cli import main as cli_main
from traderai.events import EventError
from traderai.services import auth
from traderai.testing.handlers import REPO_ROOT, FakeLambdaContext, load_event, load_handler
from traderai.testing.sam import translated_template
from traderai.testing.serving import ServingTables, serving_tables

NOW = datetime(2026, 11, 25, 11, 0, tzinfo=UTC)
API_KEYS_TABLE = "traderai-apikeys-test"
ROUTE_ARN = "arn:aws:execute-api:us-east-1:123456789012:abc123/$default/GET/signals"
METHOD_ARN = "arn:aws:execute-api:us-east-1:123456789012:ws123/prod/$connect"


@pytest.fixture(scope="module")
def cfn() -> dict[str, Any]:
    return translated_template()


@pytest.fixture
def tables(template: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> Iterator[ServingTables]:
    with serving_tables(template) as serving:
        from traderai.infra import create_dynamodb_table

        create_dynamodb_table(serving.dynamodb, template, "ApiKeysTable", API_KEYS_TABLE)
        for name, value in serving.environment("AuthorizerFunction", ApiKeysTable=API_KEYS_TABLE).items():
            monkeypatch.setenv(name, value)
        wiring.clear()
        yield serving
        wiring.clear()


@pytest.fixture
def store(tables: ServingTables) -> ApiKeyStore:
    return ApiKeyStore(API_KEYS_TABLE)


@pytest.fixture
def key(store: ApiKeyStore) -> str:
    plaintext, record = auth.new_key("test-bot", NOW)
    store.add(record)
    return plaintext


def http_event(headers: dict[str, str] | None) -> dict[str, Any]:
    """An HTTP API authorizer event (payload 2.0): the request's headers plus the route ARN."""
    event = copy.deepcopy(load_event("api_get_signals.json"))
    event.update({"type": "REQUEST", "routeArn": ROUTE_ARN, "identitySource": [], "headers": headers or {}})
    del event["requestContext"]["authorizer"]  # the integration's event has the authorizer's answer; its own has not
    return event


def ws_event(query: dict[str, str] | None) -> dict[str, Any]:
    """A WebSocket REQUEST authorizer event for $connect."""
    event = copy.deepcopy(load_event("ws_connect.json"))
    event.update({"type": "REQUEST", "methodArn": METHOD_ARN, "queryStringParameters": query})
    return event


def other_key(key: str) -> str:
    """The same key id with a different, well-formed secret."""
    return key[:-1] + ("A" if key[-1] != "A" else "B")


# ---------------------------------------------------------------- keys at rest

def test_a_key_is_shown_once_and_stored_only_as_a_salted_hash(tables: ServingTables, key: str) -> None:
    key_id, secret = auth.parse_key(key) or ("", "")
    (item,) = tables.dynamodb.scan(TableName=API_KEYS_TABLE)["Items"]
    stored = json.dumps(item)
    assert item["key_id"]["S"] == key_id and secret not in stored and key not in stored
    assert len(item["salt"]["S"]) == 32 and len(item["secret_hash"]["S"]) == 64


def test_two_keys_with_the_same_secret_would_hash_differently() -> None:
    assert auth.hash_secret(b"a" * 16, "same-secret") != auth.hash_secret(b"b" * 16, "same-secret")


def test_key_format_survives_secrets_containing_underscores() -> None:
    for _ in range(200):
        plaintext, record = auth.new_key("bot", NOW)
        assert auth.KEY_FORMAT.fullmatch(plaintext)
        assert auth.parse_key(plaintext) is not None and auth.parse_key(plaintext)[0] == record.key_id


# ---------------------------------------------------------------- the core decision

@pytest.mark.parametrize(("presented", "status", "reason"), [
    (None, 401, "missing_credential"),
    ("", 401, "missing_credential"),
    ("   ", 401, "missing_credential"),
    ("not-a-key", 403, "malformed_credential"),
    ("tai_0123456789abcdef_short", 403, "malformed_credential"),
    ("tai_0123456789abcdef_" + "A" * 43, 403, "unknown_key"),
])
def test_missing_is_401_and_anything_wrong_is_403(store: ApiKeyStore, presented: str | None, status: int,
                                                  reason: str) -> None:
    result = auth.verify(presented, store)
    assert (result.status, result.reason, result.allowed) == (status, reason, False)


def test_the_right_key_is_200_and_names_its_owner(store: ApiKeyStore, key: str) -> None:
    result = auth.verify(key, store)
    assert (result.status, result.key_name) == (200, "test-bot")
    assert result.context() == {"key_id": auth.parse_key(key)[0], "key_name": "test-bot"}


def test_a_wrong_secret_for_a_real_key_id_is_403(store: ApiKeyStore, key: str) -> None:
    assert auth.verify(other_key(key), store).reason == "wrong_secret"


def test_a_revoked_key_is_403(store: ApiKeyStore, key: str) -> None:
    store.revoke(auth.parse_key(key)[0], NOW)
    assert (auth.verify(key, store).status, auth.verify(key, store).reason) == (403, "revoked_key")


@pytest.mark.parametrize(("headers", "status"), [
    ({}, 401),
    ({"authorization": ""}, 401),
    ({"authorization": "Basic dXNlcjpwYXNz"}, 403),
    ({"x-api-key": "{key}"}, 401),  # not an accepted carrier: one identity source, the Authorization header
    ({"authorization": "Bearer {key}"}, 200),
    ({"Authorization": "bearer {key}"}, 200),
])
def test_http_credential_travels_as_a_bearer_token(store: ApiKeyStore, key: str, headers: dict[str, str],
                                                   status: int) -> None:
    event = http_event({name: value.format(key=key) for name, value in headers.items()})
    assert auth.authorize_http(event, store).status == status


@pytest.mark.parametrize(("query", "status"), [
    (None, 401), ({}, 401), ({"api_key": ""}, 401), ({"symbols": "BTC/USDT"}, 401),
    ({"api_key": "nope"}, 403), ({"api_key": "{key}", "symbols": "BTC/USDT"}, 200),
])
def test_websocket_credential_travels_in_the_query_string(store: ApiKeyStore, key: str,
                                                          query: dict[str, str] | None, status: int) -> None:
    query = None if query is None else {name: value.format(key=key) for name, value in query.items()}
    assert auth.authorize_websocket(ws_event(query), store).status == status


# ---------------------------------------------------------------- the Lambda authorizer

@pytest.fixture
def authorizer(tables: ServingTables) -> Any:
    return load_handler("authorizer").handler


def test_http_authorizer_answers_simple_responses(authorizer: Any, key: str) -> None:
    allowed = authorizer(http_event({"authorization": f"Bearer {key}"}), FakeLambdaContext())
    denied = authorizer(http_event({"authorization": f"Bearer {other_key(key)}"}), FakeLambdaContext())
    assert allowed == {"isAuthorized": True, "context": {"key_id": auth.parse_key(key)[0], "key_name": "test-bot"}}
    assert denied == {"isAuthorized": False, "context": {}}


def test_websocket_authorizer_allows_denies_or_answers_unauthorized(authorizer: Any, key: str) -> None:
    allowed = authorizer(ws_event({"api_key": key}), FakeLambdaContext())
    denied = authorizer(ws_event({"api_key": other_key(key)}), FakeLambdaContext())
    assert allowed["policyDocument"]["Statement"] == [
        {"Action": "execute-api:Invoke", "Effect": "Allow", "Resource": METHOD_ARN}]
    assert denied["policyDocument"]["Statement"][0]["Effect"] == "Deny" and denied["context"] == {}
    with pytest.raises(auth.Unauthorized, match=r"^Unauthorized$"):  # API Gateway answers 401
        authorizer(ws_event({}), FakeLambdaContext())


@pytest.mark.parametrize("event", [{}, {"type": "TOKEN"}, {"type": "REQUEST"}, {"type": "REQUEST", "version": "1.0"}])
def test_authorizer_refuses_events_it_does_not_know(authorizer: Any, event: dict[str, Any]) -> None:
    with pytest.raises(EventError, match="REQUEST authorizer event"):
        authorizer(event, FakeLambdaContext())


def test_no_key_reaches_the_logs(authorizer: Any, key: str, capsys: pytest.CaptureFixture[str],
                                caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG):
        for event in (http_event({"authorization": f"Bearer {key}"}), http_event({"authorization": other_key(key)}),
                      ws_event({"api_key": key}), ws_event({"api_key": other_key(key)})):
            authorizer(event, FakeLambdaContext())
    captured = capsys.readouterr()
    logged = captured.out + captured.err + caplog.text + repr([vars(r) for r in caplog.records])
    assert auth.parse_key(key)[1] not in logged and other_key(key)[-43:] not in logged
    assert [getattr(r, "reason", None) for r in caplog.records if r.getMessage() == "Authorization"] == [
        "ok", "wrong_secret", "ok", "wrong_secret"]


def test_websocket_function_accepts_the_api_key_parameter_on_connect(tables: ServingTables, key: str,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in tables.environment("WebSocketFunction").items():
        monkeypatch.setenv(name, value)
    wiring.clear()
    event = copy.deepcopy(load_event("ws_connect.json"))
    event["queryStringParameters"] = {"symbols": "BTC/USDT", "api_key": key}
    assert load_handler("websocket").handler(event, FakeLambdaContext()) == {"statusCode": 200}
    wiring.clear()


# ---------------------------------------------------------------- traderai keys

def test_cli_creates_lists_and_revokes_keys(store: ApiKeyStore, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main(["keys", "--table", API_KEYS_TABLE, "create", "trading-bot"]) == 0
    plaintext = capsys.readouterr().out.strip()
    assert auth.verify(plaintext, store).allowed
    key_id = auth.parse_key(plaintext)[0]

    assert cli_main(["keys", "--table", API_KEYS_TABLE, "list"]) == 0
    listed = capsys.readouterr().out
    assert json.loads(listed) == [{"key_id": key_id, "name": "trading-bot", "created_at": json.loads(listed)[0][
        "created_at"], "revoked_at": None, "status": "active"}]
    assert "secret_hash" not in listed and "salt" not in listed

    assert cli_main(["keys", "--table", API_KEYS_TABLE, "revoke", key_id]) == 0
    assert json.loads(capsys.readouterr().out)["status"] == "revoked"
    assert auth.verify(plaintext, store).status == 403
    assert cli_main(["keys", "--table", API_KEYS_TABLE, "revoke", "0000000000000000"]) == 1


# ---------------------------------------------------------------- the template

def test_http_api_requires_the_authorizer_except_on_health_and_openapi(cfn: dict[str, Any]) -> None:
    body = cfn["Resources"]["HttpApi"]["Properties"]["Body"]
    scheme = body["components"]["securitySchemes"]["ApiKeyAuthorizer"]["x-amazon-apigateway-authorizer"]
    assert scheme["identitySource"] == ["$request.header.Authorization"]
    assert (scheme["authorizerPayloadFormatVersion"], scheme["enableSimpleResponses"]) == ("2.0", True)
    assert scheme["authorizerResultTtlInSeconds"] == 300
    assert "${__FunctionArn__}" in scheme["authorizerUri"]["Fn::Sub"][0]
    assert scheme["authorizerUri"]["Fn::Sub"][1]["__FunctionArn__"] == {"Fn::GetAtt": ["AuthorizerFunction", "Arn"]}
    for path, operations in body["paths"].items():
        security = operations["get"].get("security") or body.get("security")
        expected = [{"NONE": []}] if path in ("/health", "/openapi.json") else [{"ApiKeyAuthorizer": []}]
        assert security == expected, path


def test_websocket_connect_uses_the_request_authorizer_on_the_query_string(cfn: dict[str, Any]) -> None:
    route = cfn["Resources"]["ConnectRoute"]["Properties"]
    assert (route["AuthorizationType"], route["AuthorizerId"]) == ("CUSTOM", {"Ref": "WebSocketAuthorizer"})
    authorizer = cfn["Resources"]["WebSocketAuthorizer"]["Properties"]
    assert (authorizer["AuthorizerType"], authorizer["IdentitySource"]) == (
        "REQUEST", ["route.request.querystring.api_key"])
    assert "${AuthorizerFunction.Arn}" in authorizer["AuthorizerUri"]["Fn::Sub"]
    other_routes = [r["Properties"] for lid, r in cfn["Resources"].items()
                    if r["Type"] == "AWS::ApiGatewayV2::Route" and lid != "ConnectRoute"]
    assert all("AuthorizerId" not in r for r in other_routes)  # only $connect can be authorised


@pytest.mark.parametrize(("permission", "source"), [
    ("HttpApiAuthorizerPermission", "${HttpApi}/authorizers/*"),
    ("WebSocketAuthorizerPermission", "${WebSocketApi}/authorizers/${WebSocketAuthorizer}"),
])
def test_api_gateway_may_invoke_the_authorizer(cfn: dict[str, Any], permission: str, source: str) -> None:
    props = cfn["Resources"][permission]["Properties"]
    assert (props["FunctionName"], props["Principal"]) == ({"Ref": "AuthorizerFunction"}, "apigateway.amazonaws.com")
    assert props["SourceArn"]["Fn::Sub"].endswith(source)


# ---------------------------------------------------------------- no secret in the repository

def test_no_key_shaped_string_is_committed_or_in_events_and_docs() -> None:
    tracked = subprocess.run(["git", "ls-files", "-z"], cwd=REPO_ROOT, capture_output=True, check=True).stdout
    paths = {REPO_ROOT / p for p in tracked.decode().split("\0") if p}
    paths |= set((REPO_ROOT / "events").glob("*")) | set((REPO_ROOT / "docs").rglob("*"))
    found = []
    for path in sorted(p for p in paths if p.is_file()):
        try:
            text = path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue
        found += [f"{path.relative_to(REPO_ROOT)}: {m}" for m in auth.KEY_SHAPED.findall(text)]
    assert found == []
