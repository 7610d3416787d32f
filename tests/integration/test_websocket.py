"""WebSocketFunction under moto, replying through a local `@connections` server over real sockets."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from traderai import wiring
from traderai.adapters.connections import CONNECTION_TTL, ConnectionStore
from traderai.apigw.connections import ConnectionsServer
from traderai.testing.handlers import FakeLambdaContext, load_event, load_handler
from traderai.testing.serving import ServingTables

CONNECTION_ID = "L0SM9cOFvHcCIhw="  # the id in every ws_*.json event


@pytest.fixture
def connections(serving: ServingTables) -> ConnectionStore:
    return ConnectionStore(serving.connections_table, serving.subscriptions_table)


@pytest.fixture
def call(serving: ServingTables, gateway: ConnectionsServer, monkeypatch: pytest.MonkeyPatch
         ) -> Iterator[Callable[..., dict[str, Any]]]:
    for name, value in serving.environment("WebSocketFunction").items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("WEBSOCKET_ENDPOINT", gateway.endpoint)
    wiring.clear()
    handler = load_handler("websocket").handler

    def invoke(event_file: str, body: Any = None) -> dict[str, Any]:
        event = load_event(event_file)
        if body is not None:
            event["body"] = body if isinstance(body, str) else json.dumps(body)
        return handler(event, FakeLambdaContext())

    yield invoke
    wiring.clear()


def replies(gateway: ConnectionsServer) -> list[Any]:
    return gateway.messages(CONNECTION_ID)


# ---------------------------------------------------------------- $connect / $disconnect

def test_connect_stores_the_filter_and_a_ttl(call: Callable[..., dict[str, Any]], connections: ConnectionStore,
                                             serving: ServingTables) -> None:
    assert call("ws_connect.json") == {"statusCode": 200}
    connection = connections.get(CONNECTION_ID)
    assert connection is not None and connection.symbols == {"BTC/USDT", "ETH/USDT"}  # ETH_USDT normalised
    item = serving.dynamodb.get_item(TableName=serving.connections_table, Key={"connection_id": {"S": CONNECTION_ID}})
    ttl = int(item["Item"]["ttl"]["N"])
    assert abs(ttl - (time.time() + CONNECTION_TTL.total_seconds())) < 60
    # and one subscription item per symbol, as broadcast Queries them, each with the row's TTL
    assert serving.subscription_items() == {("BTC/USDT", CONNECTION_ID, False), ("ETH/USDT", CONNECTION_ID, False)}
    assert {int(i["ttl"]["N"]) for i in serving.scan(serving.subscriptions_table)} == {ttl}


def test_connect_without_a_filter_wants_every_symbol(call: Callable[..., dict[str, Any]],
                                                     connections: ConnectionStore, serving: ServingTables) -> None:
    call("ws_connect_all.json")
    connection = connections.get(CONNECTION_ID)
    assert connection is not None and connection.symbols is None and connection.wants("DOGE/USDT")
    assert serving.subscription_items() == {("*", CONNECTION_ID, False)}  # one item, under `*`


@pytest.mark.parametrize(("query", "says"), [
    ({"symbols": "BTC/USDT,NOT A SYMBOL"}, "BASE/QUOTE"),
    ({"symbols": ""}, "no symbol"),
    ({"symbols": ",".join(f"C{i:02d}/USDT" for i in range(51))}, "at most 50"),
    ({"symbol": "BTC/USDT"}, "unknown query parameter"),
])
def test_a_bad_filter_refuses_the_connection_with_400(call: Callable[..., dict[str, Any]],
                                                      connections: ConnectionStore, query: dict[str, str],
                                                      says: str, serving: ServingTables) -> None:
    event = load_event("ws_connect_bad_symbols.json")
    event["queryStringParameters"] = query
    reply = load_handler("websocket").handler(event, FakeLambdaContext())
    assert reply["statusCode"] == 400 and says in reply["body"]
    assert connections.get(CONNECTION_ID) is None
    assert serving.subscription_items() == set()


def test_bad_symbols_sample_event_is_refused(call: Callable[..., dict[str, Any]]) -> None:
    assert call("ws_connect_bad_symbols.json")["statusCode"] == 400


def test_disconnect_deletes_the_connection_and_its_subscriptions(call: Callable[..., dict[str, Any]],
                                                                  connections: ConnectionStore,
                                                                  serving: ServingTables) -> None:
    call("ws_connect.json")
    connections.add("other=", ["BTC/USDT"], datetime.now(UTC))
    assert call("ws_disconnect.json") == {"statusCode": 200}
    assert connections.get(CONNECTION_ID) is None
    assert serving.subscription_items() == {("BTC/USDT", "other=", False)}  # only the other connection's


# ---------------------------------------------------------------- messages

def test_subscribe_adds_symbols_and_is_acknowledged_to_the_sender(call: Callable[..., dict[str, Any]],
                                                                  gateway: ConnectionsServer,
                                                                  connections: ConnectionStore,
                                                                  serving: ServingTables) -> None:
    call("ws_connect.json")
    assert call("ws_subscribe.json") == {"statusCode": 200}
    assert replies(gateway) == [{"type": "subscribed", "all_symbols": False, "id": "req-1",
                                 "symbols": ["BTC/USDT", "ETH/USDT", "SOL/USDT"], "tradeable_only": False}]
    assert connections.get(CONNECTION_ID).symbols == {"BTC/USDT", "ETH/USDT", "SOL/USDT"}
    assert {symbol for symbol, _, _ in serving.subscription_items()} == {"BTC/USDT", "ETH/USDT", "SOL/USDT"}


def test_subscribe_narrows_an_all_symbols_connection(call: Callable[..., dict[str, Any]],
                                                     gateway: ConnectionsServer, serving: ServingTables) -> None:
    call("ws_connect_all.json")
    call("ws_subscribe.json")
    assert replies(gateway)[0]["symbols"] == ["SOL/USDT"]
    assert serving.subscription_items() == {("SOL/USDT", CONNECTION_ID, False)}  # the `*` item is gone


def test_subscribe_without_symbols_means_everything(call: Callable[..., dict[str, Any]],
                                                    gateway: ConnectionsServer) -> None:
    call("ws_connect.json")
    call("ws_subscribe.json", {"action": "subscribe"})
    assert replies(gateway) == [{"type": "subscribed", "all_symbols": True, "symbols": [], "tradeable_only": False}]


def test_unsubscribe_removes_symbols(call: Callable[..., dict[str, Any]], gateway: ConnectionsServer,
                                     connections: ConnectionStore, serving: ServingTables) -> None:
    call("ws_connect.json")
    call("ws_unsubscribe.json")
    assert replies(gateway) == [{"type": "unsubscribed", "all_symbols": False, "symbols": ["BTC/USDT"],
                                 "tradeable_only": False}]
    assert serving.subscription_items() == {("BTC/USDT", CONNECTION_ID, False)}
    call("ws_unsubscribe.json", {"action": "unsubscribe"})
    assert connections.get(CONNECTION_ID).symbols == frozenset()  # nothing, not everything
    assert serving.subscription_items() == set()


def test_subscribe_recreates_a_row_that_expired(call: Callable[..., dict[str, Any]],
                                                connections: ConnectionStore) -> None:
    call("ws_subscribe.json")  # no $connect row (TTL removed it)
    assert connections.get(CONNECTION_ID).symbols == {"SOL/USDT"}


def test_subscriptions_add_up_to_at_most_50_symbols(call: Callable[..., dict[str, Any]], gateway: ConnectionsServer,
                                                    connections: ConnectionStore) -> None:
    # Given a connection that already follows 50 symbols, each message within the 50-symbol limit
    call("ws_connect_all.json")
    for batch in range(2):
        call("ws_subscribe.json", {"action": "subscribe", "symbols": [f"C{batch}X{n}/USDT" for n in range(25)]})
    assert len(connections.get(CONNECTION_ID).symbols) == 50
    # When one more subscribe would take it past 50
    call("ws_subscribe.json", {"action": "subscribe", "symbols": ["ONEMORE/USDT"], "id": 3})
    # Then it is refused and the stored list stays bounded (else repeated subscribes grow the row without end)
    reply = replies(gateway)[-1]
    assert (reply["type"], reply["error"], reply["id"]) == ("error", "bad_request", 3)
    assert "at most 50" in reply["message"]
    assert len(connections.get(CONNECTION_ID).symbols) == 50


def test_ping_gets_pong(call: Callable[..., dict[str, Any]], gateway: ConnectionsServer) -> None:
    assert call("ws_ping.json") == {"statusCode": 200}
    assert [m["type"] for m in replies(gateway)] == ["pong"]


@pytest.mark.parametrize(("event_file", "body", "error", "says"), [
    ("ws_malformed.json", None, "malformed_json", "not JSON"),
    ("ws_unknown_action.json", None, "unknown_action", "use one of subscribe, unsubscribe, ping"),
    ("ws_malformed.json", "[1, 2]", "malformed_json", "JSON object"),
    ("ws_malformed.json", "", "malformed_json", "empty message"),
    ("ws_malformed.json", "x" * 9000, "message_too_large", "8192 bytes"),
    ("ws_subscribe.json", {"action": "subscribe", "symbols": "BTC/USDT"}, "bad_request", "list of symbols"),
    ("ws_subscribe.json", {"action": "subscribe", "symbols": [1]}, "bad_request", "list of symbols"),
    ("ws_subscribe.json", {"action": "subscribe", "symbols": ["BTCUSDT"]}, "bad_request", "BASE/QUOTE"),
    ("ws_subscribe.json", {"action": "subscribe", "symbols": []}, "bad_request", "no symbol"),
    ("ws_unsubscribe.json", {"action": "unsubscribe", "symbols": ["ETH/USDT"]}, "bad_request", "every symbol"),
])
def test_bad_messages_get_an_error_and_the_connection_stays(call: Callable[..., dict[str, Any]],
                                                           gateway: ConnectionsServer,
                                                           connections: ConnectionStore, event_file: str,
                                                           body: Any, error: str, says: str) -> None:
    call("ws_connect_all.json")
    assert call(event_file, body) == {"statusCode": 200}
    [reply] = replies(gateway)
    assert reply["type"] == "error" and reply["error"] == error and says in reply["message"]
    assert connections.get(CONNECTION_ID) is not None


def test_a_reply_to_a_gone_connection_deletes_that_connection_only(call: Callable[..., dict[str, Any]],
                                                                   gateway: ConnectionsServer,
                                                                   connections: ConnectionStore) -> None:
    call("ws_connect.json")
    connections.add("neighbour=", None, connections_now())
    gateway.disconnect(CONNECTION_ID)
    call("ws_ping.json")
    assert connections.get(CONNECTION_ID) is None
    assert connections.get("neighbour=") is not None


def connections_now() -> Any:
    from datetime import UTC, datetime

    return datetime.now(UTC)


# ---------------------------------------------------------------- tradeable only (issue 12)

def test_connect_can_ask_for_tradeable_signals_only(call: Callable[..., dict[str, Any]],
                                                    connections: ConnectionStore) -> None:
    assert call("ws_connect_tradeable.json") == {"statusCode": 200}
    connection = connections.get(CONNECTION_ID)
    assert connection is not None and connection.tradeable_only is True
    assert connection.symbols == {"BTC/USDT", "ETH/USDT"}
    call("ws_connect.json")  # a plain connect takes paper signals too
    assert connections.get(CONNECTION_ID).tradeable_only is False


def test_subscribe_with_tradeable_only_keeps_the_symbols_and_can_be_undone(
        call: Callable[..., dict[str, Any]], gateway: ConnectionsServer, connections: ConnectionStore,
        serving: ServingTables) -> None:
    call("ws_connect.json")
    call("ws_subscribe_tradeable.json")
    assert replies(gateway) == [{"type": "subscribed", "all_symbols": False, "symbols": ["BTC/USDT", "ETH/USDT"],
                                 "tradeable_only": True, "id": "req-2"}]
    assert connections.get(CONNECTION_ID).tradeable_only is True
    assert serving.subscription_items() == {("BTC/USDT", CONNECTION_ID, True), ("ETH/USDT", CONNECTION_ID, True)}
    call("ws_subscribe.json")  # adding a symbol leaves the flag as it is
    assert replies(gateway)[-1]["tradeable_only"] is True
    assert {flag for _, _, flag in serving.subscription_items()} == {True} and len(serving.subscription_items()) == 3
    call("ws_subscribe.json", {"action": "subscribe", "tradeable_only": False})
    assert replies(gateway)[-1]["tradeable_only"] is False and not connections.get(CONNECTION_ID).tradeable_only
    assert {flag for _, _, flag in serving.subscription_items()} == {False}  # every item follows the flag


@pytest.mark.parametrize(("event_file", "body", "named"), [
    ("ws_subscribe.json", {"action": "subscribe", "tradeable_only": "yes"}, "tradeable_only: expected true or false"),
    ("ws_subscribe.json", {"action": "unsubscribe", "tradeable_only": True}, "tradeable_only: set it with subscribe"),
])
def test_a_bad_tradeable_only_is_an_error_reply(call: Callable[..., dict[str, Any]], gateway: ConnectionsServer,
                                                 event_file: str, body: dict[str, Any], named: str) -> None:
    call("ws_connect.json")
    call(event_file, body)
    [reply] = replies(gateway)
    assert reply["type"] == "error" and named in reply["message"]


def test_a_bad_tradeable_query_refuses_the_connection(call: Callable[..., dict[str, Any]],
                                                       connections: ConnectionStore) -> None:
    event = load_event("ws_connect_tradeable.json")
    event["queryStringParameters"]["tradeable"] = "maybe"
    reply = load_handler("websocket").handler(event, FakeLambdaContext())
    assert reply["statusCode"] == 400 and "tradeable: expected true or false" in reply["body"]
    assert connections.get(CONNECTION_ID) is None
