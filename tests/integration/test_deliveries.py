"""The Deliveries ledger at scale, under moto: its parts stay far under DynamoDB's 400 KB item limit,
writes are batched (and throttled writes sent again), and a retried fan-out of thousands of connections
posts only to those that missed it."""

from __future__ import annotations

import random
from base64 import b64encode
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from traderai.adapters.connections import Subscriber
from traderai.adapters.deliveries import PART_BYTES, DeliveryStore
from traderai.adapters.dynamo import BATCH_ATTEMPTS, batch_write
from traderai.adapters.push import Pusher, SignedPoster
from traderai.apigw.connections import ConnectionsServer
from traderai.services.broadcast import RECORD_EVERY, Broadcaster, BroadcastFailed, change_from_record
from traderai.testing.handlers import load_event
from traderai.testing.serving import DELIVERIES_TABLE, ServingTables

ITEM_LIMIT = 400 * 1024
NOW = datetime(2026, 11, 25, 10, 45, tzinfo=UTC)
CHANGE = change_from_record(load_event("broadcast_insert.json")["Records"][0])
assert CHANGE is not None and CHANGE.delivery_id


def connection_ids(count: int, seed: int = 7) -> list[str]:
    """Ids shaped like API Gateway's: 16 characters, base64 of 11 random bytes (`ZHVjgeBJoAMCJ0w=`)."""
    rand = random.Random(seed)
    return [b64encode(rand.randbytes(11)).decode() for _ in range(count)]


def item_size(item: dict[str, Any]) -> int:
    """An item's size as DynamoDB counts it: UTF-8 bytes of each attribute name plus its value's size
    (docs "DynamoDB item sizes and formats"). A set is counted like a list (3 bytes + 1 per element) to
    err on the high side; the docs give a set no overhead of its own."""

    def value_size(value: dict[str, Any]) -> int:
        (kind, data), = value.items()
        if kind == "S":
            return len(data.encode())
        if kind == "N":
            digits = str(abs(Decimal(data))).replace(".", "").strip("0") or "0"
            return (len(digits) + 1) // 2 + 1
        if kind == "SS":
            return 3 + sum(len(element.encode()) + 1 for element in data)
        if kind in ("BOOL", "NULL"):
            return 1
        raise AssertionError(f"no size rule here for {kind}")

    return sum(len(name.encode()) + value_size(value) for name, value in item.items())


def ledger_rows(serving: ServingTables) -> list[dict[str, Any]]:
    pages = serving.dynamodb.get_paginator("scan").paginate(TableName=DELIVERIES_TABLE, ConsistentRead=True)
    return [item for page in pages for item in page["Items"]]


@pytest.fixture
def ledger(serving: ServingTables) -> DeliveryStore:
    return DeliveryStore(DELIVERIES_TABLE, region="us-east-1")


def test_a_50000_connection_fan_out_keeps_every_ledger_part_far_under_the_item_limit(
        serving: ServingTables, ledger: DeliveryStore) -> None:
    # Given a fan-out reaching 50,000 connections, recorded as the broadcaster does: every RECORD_EVERY posts
    ids = connection_ids(50_000)
    for start in range(0, len(ids), RECORD_EVERY):
        ledger.record(CHANGE.delivery_id, ids[start:start + RECORD_EVERY], NOW)
    # Then each write put one new part (5,000 ids fit in one), each about a fifth of the 400 KB item limit
    rows = ledger_rows(serving)
    sizes = sorted(item_size(row) for row in rows)
    assert len(rows) == len(ids) // RECORD_EVERY
    assert sizes[-1] <= PART_BYTES + 200 < ITEM_LIMIT / 3, sizes[-1]  # ids + the key, flag and TTL
    # And the ledger reads back every one of them, none in two parts
    assert ledger.delivered(CHANGE.delivery_id) == frozenset(ids)
    assert sum(len(row["connections"]["SS"]) for row in rows) == len(ids)


def test_one_write_of_many_ids_is_split_into_parts_under_the_limit(serving: ServingTables,
                                                                   ledger: DeliveryStore) -> None:
    ids = connection_ids(30_000)
    ledger.record(CHANGE.delivery_id, ids, NOW)  # one BatchWriteItem of six parts
    rows = ledger_rows(serving)
    assert len(rows) == 6 and max(item_size(row) for row in rows) <= PART_BYTES + 200
    assert ledger.delivered(CHANGE.delivery_id) == frozenset(ids)


def test_recording_is_additive_and_idempotent_per_version(ledger: DeliveryStore) -> None:
    first, second = connection_ids(300, seed=1), connection_ids(300, seed=2)
    ledger.record(CHANGE.delivery_id, first, NOW)
    ledger.record(CHANGE.delivery_id, [*first[:100], *second], NOW)  # a retry re-records some: no harm
    assert ledger.delivered(CHANGE.delivery_id) == frozenset(first + second)
    assert ledger.delivered(f"{CHANGE.signal.signal_id}#another-version") == frozenset()


class Connections:
    """The signal's audience (the Subscriptions table is not what this test is about)."""

    def __init__(self, ids: list[str]) -> None:
        self.rows = [Subscriber(connection_id) for connection_id in ids]

    def subscribers(self, symbol: str, read: Any = None) -> list[Subscriber]:
        return list(self.rows)

    def remove_many(self, ids: Any) -> None:
        raise AssertionError("nothing is gone in this test")


@pytest.fixture
def fast_gateway(gateway: ConnectionsServer) -> Iterator[ConnectionsServer]:
    gateway.latency = 0.0
    yield gateway


def test_a_retried_fan_out_to_thousands_posts_only_to_the_connections_that_missed_it(
        serving: ServingTables, ledger: DeliveryStore, fast_gateway: ConnectionsServer) -> None:
    # Given 3,000 connections, every 100th failing (HTTP 500) on the first attempt
    ids = connection_ids(3_000)
    missed = ids[::100]
    for connection_id in missed:
        fast_gateway.failing[connection_id] = 500
    broadcaster = Broadcaster(Connections(ids), Pusher(SignedPoster(fast_gateway.endpoint)), ledger,
                              record_every=500)  # several ledger writes on the way
    with pytest.raises(BroadcastFailed, match=f"{len(missed)} of {len(ids)} posts failed"):
        broadcaster.broadcast(CHANGE)
    assert ledger.delivered(CHANGE.delivery_id) == frozenset(ids) - set(missed)
    # When the stream retries the record after the failures clear
    fast_gateway.failing.clear()
    outcome = broadcaster.broadcast(CHANGE)
    # Then only the missed connections were posted to, and every connection got the signal exactly once
    assert (outcome.targets, outcome.already_delivered, outcome.delivered) == (len(missed), len(ids) - len(missed),
                                                                               len(missed))
    delivered = Counter(post.connection_id for post in fast_gateway.posts())
    assert delivered == Counter(ids)
    assert ledger.delivered(CHANGE.delivery_id) == frozenset(ids)
    rows = ledger_rows(serving)  # a part per write: 5 on the way (2,970 reached, every 500), the rest, the retry's
    assert len(rows) == 7 and max(item_size(row) for row in rows) < ITEM_LIMIT / 40


class Throttling:
    """DynamoDB answering BatchWriteItem with some requests unprocessed (throttled) for the first `rounds`
    calls: the rest goes through to moto."""

    def __init__(self, dispatch: Any, rounds: int) -> None:
        self.dispatch, self.rounds, self.calls = dispatch, rounds, []

    def __call__(self, operation: str, kwargs: dict[str, Any]) -> dict[str, Any]:
        if operation != "BatchWriteItem":
            return self.dispatch(operation, kwargs)
        (table, requests), = kwargs["RequestItems"].items()
        self.calls.append(len(requests))
        if len(self.calls) > self.rounds:
            return self.dispatch(operation, kwargs)
        kept, dropped = requests[: len(requests) // 2], requests[len(requests) // 2:]
        if kept:
            self.dispatch(operation, {"RequestItems": {table: kept}})
        return {"UnprocessedItems": {table: dropped}}


def test_throttled_ledger_writes_are_sent_again_until_all_are_stored(
        serving: ServingTables, ledger: DeliveryStore, monkeypatch: pytest.MonkeyPatch) -> None:
    model = ledger._model
    connection = model._get_connection().connection
    throttling = Throttling(connection.dispatch, rounds=3)
    monkeypatch.setattr(connection, "dispatch", throttling)
    ids = connection_ids(40_000)  # 7 parts: one BatchWriteItem
    waits: list[float] = []
    batch_write(model, puts=[model(CHANGE.delivery_id, f"p{n}", connections=set(ids[n::7])) for n in range(7)],
                sleep=waits.append)
    assert throttling.calls == [7, 4, 2, 1]  # half left over each time, then the last one goes through
    assert waits == [0.02, 0.04, 0.08]
    assert ledger.delivered(CHANGE.delivery_id) == frozenset(ids)


def test_writes_still_throttled_after_every_round_fail_loudly(
        serving: ServingTables, ledger: DeliveryStore, monkeypatch: pytest.MonkeyPatch) -> None:
    from pynamodb.exceptions import PutError

    model = ledger._model
    connection = model._get_connection().connection
    monkeypatch.setattr(connection, "dispatch", Throttling(connection.dispatch, rounds=BATCH_ATTEMPTS))
    with pytest.raises(PutError, match=f"1 writes still unprocessed after {BATCH_ATTEMPTS}"):
        batch_write(model, puts=[model(CHANGE.delivery_id, "p1", connections={"a="})], sleep=lambda _: None)
