"""The Connections and Subscriptions tables (DynamoDB, via pynamodb): who is connected, and who follows what.

Connections: one row per open WebSocket connection with its filter as the client set it. `symbols`
absent (None) means every symbol, a list means only those (an empty list, after unsubscribing from
everything, means none); `tradeable_only` true: the connection gets no paper signal (absent: false).

Subscriptions: the same filter written the way a broadcast reads it, one item per (symbol, connection):
partition key `symbol`, sort key `connection_id`, and the reserved pseudo-symbol `*` (`ALL_SYMBOLS`)
for a connection that follows every symbol; each item carries the connection's `tradeable_only` and
TTL. DynamoDB cannot index a list attribute, so this is what lets a broadcast find its audience with a
Query on the signal's symbol plus a Query on `*`, reading only the connections that want the signal,
never a Scan of every connection.

This store alone writes both, the row last: connect puts the items, then the row; a filter change
puts the new filter's items (all of them, as the flag may have changed), deletes the items of the
symbols dropped, then updates the row; disconnect and a gone connection (410) delete the items the row
names, then the row. So a request that failed half-way and is sent again ends in step; a failure
never retried leaves at worst an item the row does not name, which costs one post (or a 410 that
deletes it) until the TTL. Two filter changes of one connection at the same instant (two messages
handled concurrently) are not in step: the row keeps the last one, as it always did, and an item only
the other named may stay until the TTL; or one change's delete may remove an item the other just wrote,
so the row names a symbol with no item and the connection gets none of its signals until its next
filter change or reconnect (a version checked on the row would close that; not built). `ttl` removes
rows and items whose `$disconnect` never arrived:
API Gateway closes every WebSocket connection after two hours anyway.
"""

from __future__ import annotations

import queue
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from pynamodb.attributes import BooleanAttribute, ListAttribute, TTLAttribute, UnicodeAttribute
from pynamodb.exceptions import UpdateError
from pynamodb.models import Model

from traderai.adapters.dynamo import batch_write, table_model
from traderai.contracts import Signal, iso_utc

CONNECTION_TTL = timedelta(hours=2, minutes=10)  # API Gateway's 2 h connection limit, plus slack
ALL_SYMBOLS = "*"  # the subscription item of a connection that follows every symbol (never a market's name)
# Items per Query page of a symbol's subscribers: a fan-out starts on the first page while the next are read
# (DynamoDB's own page is 1 MB: over 10,000 of these projected items). Each page is one more request, ~10 ms.
PAGE_ITEMS = 1_000


@dataclass(frozen=True, slots=True)
class Connection:
    """An open WebSocket connection, the symbols it wants (None = all), and whether only tradeable signals."""

    connection_id: str
    symbols: frozenset[str] | None
    connected_at: str
    tradeable_only: bool = False
    expires: datetime | None = None  # the row's TTL, which its subscription items share

    def wants(self, symbol: str) -> bool:
        return self.symbols is None or symbol in self.symbols


@dataclass(frozen=True, slots=True)
class Subscriber:
    """A connection as a broadcast finds it under a symbol: its id, and whether only tradeable signals."""

    connection_id: str
    tradeable_only: bool = False

    def wants_signal(self, signal: Signal) -> bool:
        """Found under the signal's symbol (or `*`) already: only the paper filter is left to apply."""
        return not self.tradeable_only or signal.is_tradeable


def subscription_keys(symbols: Iterable[str] | None) -> frozenset[str]:
    """The symbols a connection's subscription items sit under: `{*}` for every symbol, else its list."""
    return frozenset({ALL_SYMBOLS}) if symbols is None else frozenset(symbols)


class _ConnectionItem(Model):
    connection_id = UnicodeAttribute(hash_key=True)
    symbols = ListAttribute(of=UnicodeAttribute, null=True)
    tradeable_only = BooleanAttribute(null=True)
    connected_at = UnicodeAttribute()
    ttl = TTLAttribute()


class _SubscriptionItem(Model):
    symbol = UnicodeAttribute(hash_key=True)
    connection_id = UnicodeAttribute(range_key=True)
    tradeable_only = BooleanAttribute(null=True)
    ttl = TTLAttribute()


class ConnectionStore:
    """Register, re-filter and forget WebSocket connections; find the ones a symbol's signal goes to."""

    def __init__(self, table_name: str, subscriptions_table: str, *, region: str | None = None,
                 host: str | None = None) -> None:
        self.table_name = table_name
        self.subscriptions_table = subscriptions_table
        self._model = table_model(_ConnectionItem, table_name, region, host, max_pool_connections=32)
        self._subscriptions = table_model(_SubscriptionItem, subscriptions_table, region, host,
                                          max_pool_connections=32)
        self._readers: ThreadPoolExecutor | None = None  # the Queries of a broadcast's audience, two at once

    def add(self, connection_id: str, symbols: Iterable[str] | None, now: datetime, *,
            tradeable_only: bool = False) -> Connection:
        """Store a new connection with its filter and a TTL: its subscription items, then its row."""
        listed = _listed(symbols)
        expires = now + CONNECTION_TTL
        self._put_subscriptions(connection_id, subscription_keys(listed), tradeable_only, expires)
        item = self._model(connection_id, symbols=listed, connected_at=iso_utc(now), ttl=expires,
                           tradeable_only=tradeable_only or None)
        item.save()
        return _to_connection(item)

    def set_symbols(self, connection_id: str, symbols: Iterable[str] | None, now: datetime, *,
                    tradeable_only: bool | None = None, current: Connection | None = None) -> Connection:
        """Replace the filter (`tradeable_only` None: unchanged): the new filter's items, the dropped
        symbols' items deleted, then the row. `current`: the connection as the caller just read it (`get`),
        so the row is not read twice for one message; None: read here. A row that vanished (TTL, a lost
        race) is re-created rather than lost."""
        if current is None or current.connection_id != connection_id:
            current = self.get(connection_id)
        if current is None:
            return self.add(connection_id, symbols, now, tradeable_only=bool(tradeable_only))
        listed = _listed(symbols)
        flag = bool(current.tradeable_only) if tradeable_only is None else tradeable_only
        keys = subscription_keys(listed)
        self._put_subscriptions(connection_id, keys, flag, current.expires or now + CONNECTION_TTL)
        self._delete_subscriptions(connection_id, subscription_keys(current.symbols) - keys, batch=True)
        model = self._model
        # pynamodb's stubs type a ListAttribute's value as its attribute class, not as the values it holds
        actions = [model.symbols.set(listed) if listed is not None else model.symbols.remove(),  # type: ignore[arg-type]
                   model.tradeable_only.set(True) if flag else model.tradeable_only.remove()]
        item = model(connection_id)
        try:
            item.update(actions=actions, condition=model.connection_id.exists())  # type: ignore[arg-type]
        except UpdateError as exc:
            if exc.cause_response_code != "ConditionalCheckFailedException":
                raise
            return self.add(connection_id, symbols, now, tradeable_only=flag)
        return _to_connection(item)

    def get(self, connection_id: str) -> Connection | None:
        item = self._row(connection_id)
        return None if item is None else _to_connection(item)

    def remove(self, connection_id: str) -> None:
        """Forget one connection (idempotent): the items its row names (one BatchWriteItem), then the row."""
        self._forget(connection_id, batch=True)

    def remove_many(self, connection_ids: Iterable[str]) -> None:
        """Forget these connections with GetItem and DeleteItem only: gone ones are few, and BroadcastFunction
        may not BatchWriteItem the Subscriptions table (which could put items too)."""
        for connection_id in connection_ids:
            self._forget(connection_id, batch=False)

    def subscribers(self, symbol: str, read: dict[str, list[Subscriber]] | None = None) -> Iterator[Subscriber]:
        """The connections a signal on `symbol` goes to, before the paper filter, as they are read: a Query on
        `symbol` and one on `*`, both started at once in the store's reader threads, paginated (`PAGE_ITEMS`)
        and projected to the id and flag, so a fan-out can post to the first page while the rest is read.
        An id found under both (a filter change half-way) comes once. `read` holds the items already read,
        by symbol (or `*`): a key in it is not queried again, a key read to its end is added to it."""
        read = {} if read is None else read
        sources = {key: iter(read[key]) if key in read else self._read_ahead(key)
                   for key in dict.fromkeys((symbol, ALL_SYMBOLS))}
        seen: set[str] = set()
        for key, source in sources.items():
            got: list[Subscriber] = []
            for subscriber in source:
                got.append(subscriber)
                if subscriber.connection_id not in seen:
                    seen.add(subscriber.connection_id)
                    yield subscriber
            read[key] = got

    def following(self, key: str, *, page_size: int | None = PAGE_ITEMS) -> Iterator[Subscriber]:
        """The subscription items under one symbol (or `*`), read in this thread page after page."""
        for page in self._pages(key, page_size):
            yield from page

    def _pages(self, key: str, page_size: int | None = PAGE_ITEMS) -> Iterator[list[Subscriber]]:
        """One Query, page after page (`page_size` items, or DynamoDB's 1 MB), decoded without the model (a
        broadcast reads thousands)."""
        connection = self._subscriptions._get_connection()
        start: dict[str, Any] | None = None
        while True:
            page = connection.query(key, attributes_to_get=["connection_id", "tradeable_only"],
                                    exclusive_start_key=start, limit=page_size)
            yield [Subscriber(raw["connection_id"]["S"], bool(raw.get("tradeable_only", {}).get("BOOL")))
                   for raw in page.get("Items", ())]
            start = page.get("LastEvaluatedKey")
            if not start:
                return

    def _read_ahead(self, key: str) -> Iterator[Subscriber]:
        """Start reading `key`'s pages in a reader thread now; the items, as their pages arrive."""
        pages: queue.SimpleQueue[list[Subscriber] | BaseException | None] = queue.SimpleQueue()

        def read() -> None:
            try:
                for page in self._pages(key):
                    pages.put(page)
                pages.put(None)
            except BaseException as exc:  # noqa: BLE001 - handed to the reader, which raises it
                pages.put(exc)

        if self._readers is None:  # kept for the container's life: each thread keeps its botocore client
            self._readers = ThreadPoolExecutor(max_workers=2, thread_name_prefix="subscribers")
        self._readers.submit(read)

        def items() -> Iterator[Subscriber]:
            while (page := pages.get()) is not None:
                if isinstance(page, BaseException):
                    raise page
                yield from page

        return items()

    def _row(self, connection_id: str) -> Any:
        try:
            return self._model.get(connection_id, consistent_read=True)
        except self._model.DoesNotExist:
            return None

    def _forget(self, connection_id: str, *, batch: bool) -> None:
        row = self._row(connection_id)
        if row is not None:
            self._delete_subscriptions(connection_id, subscription_keys(row.symbols), batch=batch)
        self._model(connection_id).delete()

    def _put_subscriptions(self, connection_id: str, keys: Iterable[str], tradeable_only: bool,
                           expires: datetime) -> None:
        model = self._subscriptions
        batch_write(model, puts=[model(key, connection_id, tradeable_only=tradeable_only or None, ttl=expires)
                                 for key in sorted(keys)])

    def _delete_subscriptions(self, connection_id: str, keys: Iterable[str], *, batch: bool) -> None:
        items = [self._subscriptions(key, connection_id) for key in sorted(keys)]
        if batch:
            batch_write(self._subscriptions, deletes=items)
            return
        for item in items:
            item.delete()


def _listed(symbols: Iterable[str] | None) -> list[str] | None:
    return None if symbols is None else sorted(set(symbols))


def _to_connection(item: Any) -> Connection:
    symbols = None if item.symbols is None else frozenset(item.symbols)
    return Connection(item.connection_id, symbols, item.connected_at, bool(item.tradeable_only), item.ttl)
