"""The Deliveries table (DynamoDB, via pynamodb): which connections already got a signal version.

A (signal, version) is `delivery_id = "<signal_id>#<version>"`, where the version is the stream record's
sequence number (one per stored change, the same on every redelivery of that record). Its connection
ids are spread over `SHARDS` rows by a stable hash of the id (partition key `delivery_id`, sort key
`shard`), so no row nears DynamoDB's 400 KB item limit: ~1/64 of the connections each, ~28 KB at
100,000 connections. One row per version held every id and could not be written past ~20,000.

The broadcaster reads a version's rows (one consistent Query) before a fan-out and adds the connections
it reaches (an `ADD` UpdateItem per shard touched), so a record retried after a partial failure (or
delivered twice) posts only to the connections that have not got it: one push per connection per
version. Rows expire by TTL a day later, long after the stream gives up on a record
(MaximumRecordAgeInSeconds).
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta

from pynamodb.attributes import NumberAttribute, TTLAttribute, UnicodeAttribute, UnicodeSetAttribute
from pynamodb.models import Model

from traderai.adapters.dynamo import table_model

DELIVERY_TTL = timedelta(days=1)
# Fixed, never derived from the connection count: a retry must look for an id in the row its first
# attempt wrote. 64 rows hold ~25 MB of ids, over a million connections, before one nears 400 KB.
SHARDS = 64
WRITERS = 16  # shard rows updated concurrently per record (pynamodb keeps one botocore session per thread)


def delivery_id(signal_id: str, version: str) -> str:
    return f"{signal_id}#{version}"


def shard_of(connection_id: str) -> int:
    """The ledger row of a connection id: CRC-32 of its UTF-8 bytes, modulo `SHARDS` (the same in every
    process, unlike `hash()`)."""
    return zlib.crc32(connection_id.encode()) % SHARDS


def by_shard(connection_ids: Iterable[str]) -> dict[int, set[str]]:
    """Connection ids grouped by their ledger row."""
    groups: dict[int, set[str]] = {}
    for connection_id in connection_ids:
        groups.setdefault(shard_of(connection_id), set()).add(connection_id)
    return groups


class _DeliveryShard(Model):
    delivery_id = UnicodeAttribute(hash_key=True)
    shard = NumberAttribute(range_key=True)
    connections = UnicodeSetAttribute(null=True)
    ttl = TTLAttribute(null=True)


class DeliveryStore:
    """`DeliveryLedger` over the Deliveries table: a consistent Query per read, an `ADD` UpdateItem per
    shard row a record touches."""

    def __init__(self, table_name: str, *, region: str | None = None, host: str | None = None) -> None:
        self.table_name = table_name
        self._model = table_model(_DeliveryShard, table_name, region, host)

    def delivered(self, delivery_id: str) -> frozenset[str]:
        reached: set[str] = set()
        for row in self._model.query(delivery_id, consistent_read=True, attributes_to_get=["connections"]):
            reached.update(row.connections or ())
        return frozenset(reached)

    def record(self, delivery_id: str, connection_ids: Iterable[str], now: datetime) -> None:
        groups = by_shard(connection_ids)
        if not groups:
            return
        expires = now + DELIVERY_TTL
        model = self._model

        def add(shard: int) -> None:
            model(delivery_id, shard).update(actions=[model.connections.add(groups[shard]), model.ttl.set(expires)])

        if len(groups) == 1:
            add(next(iter(groups)))
            return
        with ThreadPoolExecutor(max_workers=min(WRITERS, len(groups)), thread_name_prefix="ledger") as pool:
            for written in [pool.submit(add, shard) for shard in groups]:
                written.result()  # the first failed write fails the record: the stream retries it


class InMemoryLedger:
    """A `DeliveryLedger` in a dict: the local demo and unit tests."""

    def __init__(self) -> None:
        self.rows: dict[str, set[str]] = {}

    def delivered(self, delivery_id: str) -> frozenset[str]:
        return frozenset(self.rows.get(delivery_id, ()))

    def record(self, delivery_id: str, connection_ids: Iterable[str], now: datetime) -> None:
        self.rows.setdefault(delivery_id, set()).update(connection_ids)
