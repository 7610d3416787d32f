"""The Deliveries ledger at scale, under moto: sharded rows stay far under DynamoDB's 400 KB item limit,
and a retried fan-out of thousands of connections posts only to those that missed it."""

from __future__ import annotations

import random
from base64 import b64encode
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from traderai.adapters.connections import Connection
from traderai.adapters.deliveries import SHARDS, DeliveryStore
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


def test_a_50000_connection_fan_out_keeps_every_ledger_row_far_under_the_item_limit(
        serving: ServingTables, ledger: DeliveryStore) -> None:
    # Given a fan-out reaching 50,000 connections, recorded as the broadcaster does: every RECORD_EVERY posts
    ids = connection_ids(50_000)
    for start in range(0, len(ids), RECORD_EVERY):
        ledger.record(CHANGE.delivery_id, ids[start:start + RECORD_EVERY], NOW)
    # Then the version's ids sit in SHARDS rows, each a few percent of DynamoDB's 400 KB item limit
    rows = ledger_rows(serving)
    sizes = sorted(item_size(row) for row in rows)
    assert len(rows) == SHARDS
    assert sizes[-1] < ITEM_LIMIT / 20, sizes[-1]  # ~16 KB: 100,000 connections would be ~32 KB
    # And the ledger reads back every one of them
    assert ledger.delivered(CHANGE.delivery_id) == frozenset(ids)


def test_recording_is_additive_and_idempotent_per_version(ledger: DeliveryStore) -> None:
    first, second = connection_ids(300, seed=1), connection_ids(300, seed=2)
    ledger.record(CHANGE.delivery_id, first, NOW)
    ledger.record(CHANGE.delivery_id, [*first[:100], *second], NOW)  # a retry re-records some: no harm
    assert ledger.delivered(CHANGE.delivery_id) == frozenset(first + second)
    assert ledger.delivered(f"{CHANGE.signal.signal_id}#another-version") == frozenset()


class Connections:
    """The batch's open connections (the Connections table is not what this test is about)."""

    def __init__(self, ids: list[str]) -> None:
        self.rows = [Connection(connection_id, None, "2026-11-25T10:00:00Z") for connection_id in ids]

    def all(self) -> list[Connection]:
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
    rows = ledger_rows(serving)
    assert len(rows) == SHARDS and max(item_size(row) for row in rows) < ITEM_LIMIT / 100
