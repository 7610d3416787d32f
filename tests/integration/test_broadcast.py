"""BroadcastFunction under moto, pushing to a local `@connections` server over real sockets.

moto never answers 410 Gone; the local server does, so stale-connection cleanup is tested for real.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from traderai import wiring
from traderai.adapters.connections import PAGE_ITEMS, ConnectionStore, Subscriber
from traderai.adapters.push import Pusher, SignedPoster
from traderai.adapters.signal_store import signal_from_item
from traderai.apigw.connections import ConnectionsServer
from traderai.core.text_format import signal_text
from traderai.services.broadcast import Broadcaster, change_from_record
from traderai.testing.handlers import FakeLambdaContext, load_event, load_handler
from traderai.testing.serving import ServingTables

NOW = datetime(2026, 11, 25, 10, 45, tzinfo=UTC)
BTC_SIGNAL = signal_from_item(load_event("broadcast_insert.json")["Records"][0]["dynamodb"]["NewImage"])


@pytest.fixture(autouse=True)
def _posts_take_two_milliseconds(gateway: ConnectionsServer) -> None:
    gateway.latency = 0.002


@pytest.fixture
def connections(serving: ServingTables) -> ConnectionStore:
    store = ConnectionStore(serving.connections_table, serving.subscriptions_table)
    store.add("all=", None, NOW)
    store.add("btc=", ["BTC/USDT"], NOW)
    store.add("eth=", ["ETH/USDT"], NOW)
    store.add("btc-and-eth=", ["BTC/USDT", "ETH/USDT"], NOW)
    return store


@pytest.fixture(params=["signed", "boto3"])
def broadcast(request: pytest.FixtureRequest, serving: ServingTables, gateway: ConnectionsServer,
              connections: ConnectionStore, monkeypatch: pytest.MonkeyPatch
              ) -> Iterator[Callable[[dict[str, Any]], dict[str, Any]]]:
    """The handler, with each push transport (boto3 reaches the local server: moto lets it through)."""
    for name, value in serving.environment("BroadcastFunction").items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("WEBSOCKET_ENDPOINT", gateway.endpoint)
    monkeypatch.setenv("PUSH_TRANSPORT", request.param)
    wiring.clear()
    handler = load_handler("broadcast").handler
    yield lambda event: handler(event, FakeLambdaContext())
    wiring.clear()


def remaining(serving: ServingTables) -> set[str]:
    """The connections left: their rows, checked against their subscription items (kept in step)."""
    ids = serving.connection_ids()
    assert {connection_id for _, connection_id, _ in serving.subscription_items()} == ids
    return ids


def test_insert_goes_as_signal_to_every_matching_connection(broadcast: Callable[..., dict[str, Any]],
                                                            gateway: ConnectionsServer) -> None:
    assert broadcast(load_event("broadcast_insert.json")) == {"batchItemFailures": []}
    expected = {"type": "signal", "data": BTC_SIGNAL.to_dict(), "text": signal_text(BTC_SIGNAL)}
    for connection_id in ("all=", "btc=", "btc-and-eth="):
        assert gateway.messages(connection_id) == [expected]
    assert gateway.messages("eth=") == []


def test_a_paper_signal_skips_connections_that_asked_for_tradeable_only(broadcast: Callable[..., dict[str, Any]],
                                                                        gateway: ConnectionsServer,
                                                                        connections: ConnectionStore) -> None:
    connections.add("btc-tradeable=", ["BTC/USDT"], NOW, tradeable_only=True)
    # a tradeable signal reaches it
    assert broadcast(load_event("broadcast_insert.json")) == {"batchItemFailures": []}
    assert [m["data"]["signal_id"] for m in gateway.messages("btc-tradeable=")] == [BTC_SIGNAL.signal_id]
    # a paper one does not
    event = load_event("broadcast_insert_paper.json")
    paper = signal_from_item(event["Records"][0]["dynamodb"]["NewImage"])
    assert paper.tradeable is False
    assert broadcast(event) == {"batchItemFailures": []}
    for connection_id in ("all=", "btc=", "btc-and-eth="):
        assert [m["data"]["signal_id"] for m in gateway.messages(connection_id)][-1] == paper.signal_id
    assert [m["data"]["signal_id"] for m in gateway.messages("btc-tradeable=")] == [BTC_SIGNAL.signal_id]
    assert gateway.messages("eth=") == []


def test_modify_goes_as_signal_update_with_what_changed(broadcast: Callable[..., dict[str, Any]],
                                                        gateway: ConnectionsServer) -> None:
    assert broadcast(load_event("broadcast_modify.json")) == {"batchItemFailures": []}
    [message] = gateway.messages("btc=")
    assert message["type"] == "signal_update" and message["changed"] == ["status"]
    assert message["data"]["status"] == "TP1_HIT" and message["data"]["entry_price"] == 97000.0


def test_a_batch_is_pushed_in_order_each_record_to_its_market(broadcast: Callable[..., dict[str, Any]],
                                                              gateway: ConnectionsServer) -> None:
    assert broadcast(load_event("broadcast_batch.json")) == {"batchItemFailures": []}
    assert [m["type"] for m in gateway.messages("all=")] == ["signal", "signal", "signal_update"]
    assert [m["data"]["symbol"] for m in gateway.messages("eth=")] == ["ETH/USDT"]
    assert [m["type"] for m in gateway.messages("btc=")] == ["signal", "signal_update"]


def test_gone_connections_are_deleted_with_every_item_of_theirs_and_no_other(
        broadcast: Callable[..., dict[str, Any]], gateway: ConnectionsServer, serving: ServingTables) -> None:
    # Given two subscribers gone away without a $disconnect, one of them following BTC and ETH
    gateway.disconnect("btc=")
    gateway.disconnect("btc-and-eth=")
    # When a BTC signal is broadcast
    assert broadcast(load_event("broadcast_insert.json")) == {"batchItemFailures": []}
    # Then those very connections' rows and all their items (the ETH one too) are deleted; the others stay
    assert remaining(serving) == {"all=", "eth="}
    assert serving.subscription_items() == {("*", "all=", False), ("ETH/USDT", "eth=", False)}
    assert len(gateway.messages("all=")) == 1


def test_a_gone_connection_is_not_posted_to_again_in_the_same_batch(broadcast: Callable[..., dict[str, Any]],
                                                                    gateway: ConnectionsServer) -> None:
    gateway.disconnect("all=")
    broadcast(load_event("broadcast_batch.json"))
    assert len(gateway.posts("all=", status=410)) == 1


def test_other_failures_report_the_record_for_retry_and_keep_the_connection(
        broadcast: Callable[..., dict[str, Any]], gateway: ConnectionsServer, serving: ServingTables) -> None:
    gateway.failing["btc="] = 500
    event = load_event("broadcast_batch.json")
    reply = broadcast(event)
    # The two BTC records fail (btc= is a target), the ETH one in between does not
    failed = [f["itemIdentifier"] for f in reply["batchItemFailures"]]
    btc_records = [r["dynamodb"]["SequenceNumber"] for r in event["Records"]
                   if r["dynamodb"]["NewImage"]["symbol"]["S"] == "BTC/USDT"]
    assert failed == btc_records
    assert "btc=" in remaining(serving)
    assert len(gateway.messages("all=")) == 3  # everyone else still got everything


def test_a_slow_connection_does_not_hold_up_the_others(serving: ServingTables, gateway: ConnectionsServer,
                                                       connections: ConnectionStore,
                                                       broadcast: Callable[..., dict[str, Any]]) -> None:
    # Given 150 more subscribers (more than the pool's 64 workers) and one that answers only once every other post
    # has been answered (at most 30 s): a broadcast that waited for it before posting to the others would find
    # it answered last only after those 30 s, with the others' answers after it. No clock decides the order, so a
    # loaded machine cannot flip it (a fixed 3 s delay could be outrun by 152 posts on a busy machine)
    for n in range(150):
        connections.add(f"fast-{n}=", None, NOW)
    gateway.latency = 0.01

    def others_first(connection_id: str, body: bytes) -> bool:
        deadline = time.monotonic() + 30.0
        while connection_id == "all=" and time.monotonic() < deadline:
            if len([post for post in gateway.posts() if post.connection_id != "all="]) >= 152:
                break
            time.sleep(0.005)
        return True

    gateway.deliver = others_first
    started = time.monotonic()
    assert broadcast(load_event("broadcast_insert.json")) == {"batchItemFailures": []}
    # Then every other post was answered before the slow one was, and the slow one waited for them, not 30 s
    [slow] = gateway.posts("all=")
    fast = [post for post in gateway.posts() if post.connection_id != "all="]
    assert len(fast) == 152 and max(post.at for post in fast) < slow.at < started + 30.0


def test_remove_records_are_ignored(broadcast: Callable[..., dict[str, Any]], gateway: ConnectionsServer) -> None:
    event = load_event("broadcast_insert.json")
    record = copy.deepcopy(event["Records"][0])
    record["eventName"] = "REMOVE"
    record["dynamodb"]["OldImage"] = record["dynamodb"].pop("NewImage")
    assert broadcast({"Records": [record]}) == {"batchItemFailures": []}
    assert gateway.posts() == []


def test_no_connections_means_nothing_to_do(broadcast: Callable[..., dict[str, Any]], gateway: ConnectionsServer,
                                            connections: ConnectionStore, serving: ServingTables) -> None:
    connections.remove_many(remaining(serving))
    assert serving.subscription_items() == set()
    assert broadcast(load_event("broadcast_insert.json")) == {"batchItemFailures": []}
    assert gateway.posts() == []


def test_a_batch_queries_each_symbol_and_every_symbol_once_and_never_scans(
        serving: ServingTables, gateway: ConnectionsServer, connections: ConnectionStore,
        monkeypatch: pytest.MonkeyPatch) -> None:
    # Given the batch of three records (BTC, ETH, BTC), and every DynamoDB call of the store noted
    calls: list[tuple[str, str, str]] = []
    store = ConnectionStore(serving.connections_table, serving.subscriptions_table)
    for model in (store._model, store._subscriptions):
        connection = model._get_connection().connection
        dispatch = connection.dispatch

        def noting(operation: str, kwargs: dict[str, Any], dispatch: Any = dispatch) -> Any:
            key = next(iter(kwargs.get("ExpressionAttributeValues", {}).values()), {}).get("S", "")
            calls.append((operation, kwargs.get("TableName", ""), key))
            return dispatch(operation, kwargs)

        monkeypatch.setattr(connection, "dispatch", noting)
    broadcaster = Broadcaster(store, Pusher(SignedPoster(gateway.endpoint)))
    for record in load_event("broadcast_batch.json")["Records"]:
        change = change_from_record(record)
        assert change is not None
        broadcaster.broadcast(change)
    # Then each symbol was queried once and `*` once, in the Subscriptions table, and nothing else was read
    table = serving.subscriptions_table
    assert sorted(calls) == sorted([("Query", table, "BTC/USDT"), ("Query", table, "*"), ("Query", table, "ETH/USDT")])
    # And each connection got only its symbols' signals
    assert [m["data"]["symbol"] for m in gateway.messages("eth=")] == ["ETH/USDT"]
    assert len(gateway.messages("all=")) == 3 and len(gateway.messages("btc=")) == 2


def test_the_fan_out_starts_while_the_audience_is_still_being_read(
        serving: ServingTables, gateway: ConnectionsServer, connections: ConnectionStore) -> None:
    # Given 2,500 connections following BTC (three pages of PAGE_ITEMS), and a Query that hands over its
    # second page only once a post of the first has been answered (a fan-out that waited for the whole
    # audience would wait here until the deadline)
    with connections._subscriptions.batch_write() as batch:
        for n in range(2_500):
            batch.save(connections._subscriptions("BTC/USDT", f"page-{n:04d}=", ttl=NOW))
    pages = connections._pages
    waited: list[bool] = []

    def second_page_after_a_post(key: str, page_size: int | None = PAGE_ITEMS) -> Iterator[list[Subscriber]]:
        for number, page in enumerate(pages(key, page_size)):
            if number == 1:
                deadline = time.monotonic() + 20
                while not gateway.posts() and time.monotonic() < deadline:
                    time.sleep(0.01)
                waited.append(bool(gateway.posts()))
            yield page

    connections._pages = second_page_after_a_post  # type: ignore[method-assign]
    change = change_from_record(load_event("broadcast_insert.json")["Records"][0])
    assert change is not None
    outcome = Broadcaster(connections, Pusher(SignedPoster(gateway.endpoint))).broadcast(change)
    # Then posts were answered before the second page was read, and every connection (and the fixture's
    # three) got the signal once
    assert waited == [True]
    assert outcome.delivered == 2_503 and len(gateway.posts()) == 2_503


def test_following_reads_every_page(serving: ServingTables, connections: ConnectionStore) -> None:
    for n in range(7):
        connections.add(f"page-{n}=", ["SOL/USDT"], NOW, tradeable_only=n % 2 == 0)
    found = list(connections.following("SOL/USDT", page_size=2))  # four Queries
    assert sorted(s.connection_id for s in found) == [f"page-{n}=" for n in range(7)]
    assert {s.connection_id for s in found if s.tradeable_only} == {f"page-{n}=" for n in range(0, 7, 2)}
