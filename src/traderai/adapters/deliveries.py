"""The Deliveries table (DynamoDB, via pynamodb): which connections already got a signal version.

One row per (signal, version): `delivery_id = "<signal_id>#<version>"`, where the version is the stream
record's sequence number (one per stored change, the same on every redelivery of that record). The row
holds the set of connection ids the change was pushed to. The broadcaster reads it before a fan-out and
adds the connections it just reached, so a record retried after a partial failure (or delivered twice)
posts only to the connections that have not got it: one push per connection per signal version.
Rows expire by TTL a day later, long after the stream gives up on a record (MaximumRecordAgeInSeconds).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Protocol

from pynamodb.attributes import TTLAttribute, UnicodeAttribute, UnicodeSetAttribute
from pynamodb.models import Model

DELIVERY_TTL = timedelta(days=1)


class DeliveryLedger(Protocol):
    def delivered(self, delivery_id: str) -> frozenset[str]:
        """Connection ids this signal version was already pushed to."""
        ...

    def record(self, delivery_id: str, connection_ids: Iterable[str], now: datetime) -> None:
        """Add connection ids that just got this signal version."""
        ...


def delivery_id(signal_id: str, version: str) -> str:
    return f"{signal_id}#{version}"


class _DeliveryItem(Model):
    delivery_id = UnicodeAttribute(hash_key=True)
    connections = UnicodeSetAttribute(null=True)
    ttl = TTLAttribute(null=True)


@lru_cache(maxsize=16)
def _model_for(table_name: str, region: str | None, host: str | None) -> type[_DeliveryItem]:
    meta = type("Meta", (), {"table_name": table_name, "region": region, "host": host})
    return type("DeliveryItem", (_DeliveryItem,), {"__module__": __name__, "Meta": meta})


def _region_default() -> str | None:
    from botocore.session import get_session  # already imported by pynamodb: no cost

    return get_session().get_config_variable("region")


class DeliveryStore:
    """`DeliveryLedger` over the Deliveries table: a consistent GetItem and an `ADD` UpdateItem per record."""

    def __init__(self, table_name: str, *, region: str | None = None, host: str | None = None) -> None:
        self.table_name = table_name
        self._model = _model_for(table_name, region or _region_default(), host)

    def delivered(self, delivery_id: str) -> frozenset[str]:
        try:
            item = self._model.get(delivery_id, consistent_read=True)
        except self._model.DoesNotExist:
            return frozenset()
        return frozenset(item.connections or ())

    def record(self, delivery_id: str, connection_ids: Iterable[str], now: datetime) -> None:
        ids = set(connection_ids)
        if not ids:
            return
        model = self._model
        model(delivery_id).update(actions=[model.connections.add(ids), model.ttl.set(now + DELIVERY_TTL)])


class InMemoryLedger:
    """A `DeliveryLedger` in a dict: the local demo and unit tests."""

    def __init__(self) -> None:
        self.rows: dict[str, set[str]] = {}

    def delivered(self, delivery_id: str) -> frozenset[str]:
        return frozenset(self.rows.get(delivery_id, ()))

    def record(self, delivery_id: str, connection_ids: Iterable[str], now: datetime) -> None:
        self.rows.setdefault(delivery_id, set()).update(connection_ids)

