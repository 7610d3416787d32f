"""The Subscriptions items stay in step with each connection's filter, under moto (tables from the template).

Property test: any sequence of connects, subscribes, unsubscribes (with or without symbols, with the
tradeable flag or not, valid or refused), disconnects and gone connections leaves exactly one item per
(symbol or `*`, connection) the connection's row names, with the row's flag: nothing lost, nothing
doubled, nothing stale. And the audience a broadcast reads for each symbol (a Query on it and on `*`)
is exactly the connections whose filter wants that symbol, each once.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from hypothesis import given, note, settings
from hypothesis import strategies as st

from traderai.adapters.connections import ALL_SYMBOLS, ConnectionStore, subscription_keys
from traderai.infra import load_template
from traderai.services import websocket
from traderai.services.websocket import WebSocketRequest
from traderai.testing.serving import ServingTables, serving_tables

NOW = datetime(2026, 11, 25, 10, 45, tzinfo=UTC)
SYMBOLS = ("BTC/USDT", "ETH/USDT", "SOL/USDT")
IDS = ("a=", "b=", "c=")
TEMPLATE = load_template()

symbol_lists = st.none() | st.lists(st.sampled_from(SYMBOLS), min_size=1, max_size=3)
flags = st.none() | st.booleans()
steps = st.one_of(
    st.tuples(st.just("connect"), st.sampled_from(IDS), symbol_lists, st.booleans()),
    st.tuples(st.just("subscribe"), st.sampled_from(IDS), symbol_lists, flags),
    st.tuples(st.just("unsubscribe"), st.sampled_from(IDS), symbol_lists, st.none()),
    st.tuples(st.just("disconnect"), st.sampled_from(IDS), st.none(), st.none()),
    st.tuples(st.just("gone"), st.sampled_from(IDS), st.none(), st.none()),  # a 410 found by a broadcast
)


def apply(store: ConnectionStore, step: tuple[str, str, Any, Any], connected: set[str]) -> None:
    """One step through the WebSocket service (as its function runs it) or the broadcaster's clean-up."""
    action, connection_id, symbols, flag = step
    if action == "connect":
        if connection_id in connected:  # API Gateway never reuses an open connection's id
            return
        query = {} if symbols is None else {"symbols": ",".join(symbols)}
        websocket.connect(store, WebSocketRequest("$connect", connection_id, None, query | {"tradeable": str(flag)}),
                          NOW)
        connected.add(connection_id)
    elif action in ("subscribe", "unsubscribe"):
        message: dict[str, Any] = {"action": action}
        if symbols is not None:
            message["symbols"] = symbols
        if flag is not None:
            message["tradeable_only"] = flag
        reply = websocket.reply_to(store, WebSocketRequest(action, connection_id, json.dumps(message), {}), NOW)
        if reply["type"] != "error":
            connected.add(connection_id)  # a subscribe re-creates a row that expired
            row = store.get(connection_id)
            assert row is not None
            assert (reply["all_symbols"], set(reply["symbols"]), reply["tradeable_only"]) == (
                row.symbols is None, set(row.symbols or ()), row.tradeable_only)
    elif action == "disconnect":
        websocket.disconnect(store, WebSocketRequest("$disconnect", connection_id, None, {}))
        connected.discard(connection_id)
    else:
        store.remove_many([connection_id])
        connected.discard(connection_id)


def check_in_step(tables: ServingTables, store: ConnectionStore) -> None:
    rows = {connection_id: store.get(connection_id) for connection_id in tables.connection_ids()}
    expected = {(key, connection_id, row.tradeable_only) for connection_id, row in rows.items() if row is not None
                for key in subscription_keys(row.symbols)}
    assert tables.subscription_items() == expected
    for symbol in SYMBOLS:
        audience = list(store.subscribers(symbol))
        ids = [subscriber.connection_id for subscriber in audience]
        assert len(ids) == len(set(ids))  # each once
        assert {(s.connection_id, s.tradeable_only) for s in audience} == {
            (connection_id, row.tradeable_only) for connection_id, row in rows.items()
            if row is not None and row.wants(symbol)}


@settings(max_examples=30, deadline=None)
@given(script=st.lists(steps, max_size=10))
def test_subscription_items_follow_every_filter_change(script: list[tuple[str, str, Any, Any]]) -> None:
    with serving_tables(TEMPLATE) as tables:
        store = ConnectionStore(tables.connections_table, tables.subscriptions_table, region="us-east-1")
        connected: set[str] = set()
        for step in script:
            note(repr(step))
            apply(store, step, connected)
            check_in_step(tables, store)
        assert tables.connection_ids() == connected


def test_every_symbol_is_one_item_under_star_and_a_list_is_one_item_per_symbol() -> None:
    assert subscription_keys(None) == {ALL_SYMBOLS}
    assert subscription_keys(["ETH/USDT", "BTC/USDT", "BTC/USDT"]) == {"BTC/USDT", "ETH/USDT"}
    assert subscription_keys([]) == frozenset()  # unsubscribed from everything: found under nothing


def test_a_subscribe_message_reads_the_connection_row_once(monkeypatch: Any) -> None:
    # Given an open connection following BTC/USDT
    with serving_tables(TEMPLATE) as tables:
        store = ConnectionStore(tables.connections_table, tables.subscriptions_table, region="us-east-1")
        websocket.connect(store, WebSocketRequest("$connect", "a=", None, {"symbols": "BTC/USDT"}), NOW)
        reads: list[str] = []
        row = store._row

        def counted(connection_id: str) -> Any:
            reads.append(connection_id)
            return row(connection_id)

        monkeypatch.setattr(store, "_row", counted)
        # When it subscribes to one more symbol
        message = json.dumps({"action": "subscribe", "symbols": ["ETH/USDT"]})
        reply = websocket.reply_to(store, WebSocketRequest("subscribe", "a=", message, {}), NOW)
        # Then the row was read once (strongly consistent GetItem), and the filter and its items are in step
        assert reply["type"] == "subscribed"
        assert reads == ["a="]
        assert store.get("a=").symbols == {"BTC/USDT", "ETH/USDT"}
        check_in_step(tables, store)
