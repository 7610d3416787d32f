"""The Deliveries table (DynamoDB, via pynamodb): which connections already got a signal version.

A (signal, version) is `delivery_id = "<signal_id>#<version>"`, where the version is the stream record's
sequence number (one per stored change, the same on every redelivery of that record). Its connection
ids sit in immutable parts (partition key `delivery_id`, sort key `part`, a random id): each write puts
new parts holding the ids it adds, at most `PART_BYTES` of ids each so no part nears DynamoDB's 400 KB
item limit, all in one BatchWriteItem (25 parts a call, unprocessed ones sent again). Nothing is ever
read back or rewritten to write, so a write costs the ids it adds (~17 write units per 1,000 ids),
where an `ADD` UpdateItem per shard row cost each row's whole size every time.

The broadcaster reads a version's parts (one consistent Query, paginated) before a fan-out and records
the connections it reaches as it goes, so a record retried after a partial failure (or delivered twice)
posts only to the connections that have not got it: one push per connection per version. Parts expire
by TTL a day later, long after the stream gives up on a record (MaximumRecordAgeInSeconds).
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable, Iterator
from datetime import datetime, timedelta

from pynamodb.attributes import TTLAttribute, UnicodeAttribute, UnicodeSetAttribute
from pynamodb.models import Model

from traderai.adapters.dynamo import batch_write, table_model

DELIVERY_TTL = timedelta(days=1)
# Bytes of ids per part: a quarter of the 400 KB item limit, ~5,800 API Gateway ids (16 characters).
PART_BYTES = 100_000


def delivery_id(signal_id: str, version: str) -> str:
    return f"{signal_id}#{version}"


def parts(connection_ids: Iterable[str], limit: int = PART_BYTES) -> Iterator[list[str]]:
    """The distinct ids, in order, in groups of at most `limit` bytes (UTF-8, plus one per id, as DynamoDB
    counts a set's elements); an id is never in two groups, and a group closes only when the next id
    would not fit."""
    group: list[str] = []
    size = 0
    for connection_id in dict.fromkeys(connection_ids):
        length = len(connection_id.encode()) + 1
        if group and size + length > limit:
            yield group
            group, size = [], 0
        group.append(connection_id)
        size += length
    if group:
        yield group


def new_part_id() -> str:
    """A part's sort key: random (128 bits), so a retry's parts never overwrite an earlier attempt's."""
    return secrets.token_hex(16)


class _DeliveryPart(Model):
    delivery_id = UnicodeAttribute(hash_key=True)
    part = UnicodeAttribute(range_key=True)
    connections = UnicodeSetAttribute()
    ttl = TTLAttribute(null=True)


class DeliveryStore:
    """`DeliveryLedger` over the Deliveries table: a consistent Query per read, one BatchWriteItem of new
    parts per record."""

    def __init__(self, table_name: str, *, region: str | None = None, host: str | None = None) -> None:
        self.table_name = table_name
        self._model = table_model(_DeliveryPart, table_name, region, host)

    def delivered(self, delivery_id: str) -> frozenset[str]:
        reached: set[str] = set()
        for row in self._model.query(delivery_id, consistent_read=True, attributes_to_get=["connections"]):
            reached.update(row.connections or ())
        return frozenset(reached)

    def record(self, delivery_id: str, connection_ids: Iterable[str], now: datetime) -> None:
        expires = now + DELIVERY_TTL
        model = self._model
        # the first failed write fails the record: the stream retries it
        batch_write(model, puts=[model(delivery_id, new_part_id(), connections=set(group), ttl=expires)
                                 for group in parts(connection_ids)])


class InMemoryLedger:
    """A `DeliveryLedger` in a dict: the local demo and unit tests."""

    def __init__(self) -> None:
        self.rows: dict[str, set[str]] = {}

    def delivered(self, delivery_id: str) -> frozenset[str]:
        return frozenset(self.rows.get(delivery_id, ()))

    def record(self, delivery_id: str, connection_ids: Iterable[str], now: datetime) -> None:
        self.rows.setdefault(delivery_id, set()).update(connection_ids)
