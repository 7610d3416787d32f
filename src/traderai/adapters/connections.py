"""The Connections table (DynamoDB, via pynamodb): one row per open WebSocket connection.

`symbols` is the connection's filter: absent (None) means every symbol, a list means only those
(an empty list, after unsubscribing from everything, means none). `tradeable_only` true: the connection
gets no paper signal (absent: false, every signal). `ttl` removes rows whose
`$disconnect` never arrived: API Gateway closes every WebSocket connection after two hours anyway.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from pynamodb.attributes import BooleanAttribute, ListAttribute, TTLAttribute, UnicodeAttribute
from pynamodb.exceptions import UpdateError
from pynamodb.models import Model

from traderai.adapters.dynamo import table_model
from traderai.contracts import Signal, iso_utc

CONNECTION_TTL = timedelta(hours=2, minutes=10)  # API Gateway's 2 h connection limit, plus slack


@dataclass(frozen=True, slots=True)
class Connection:
    """An open WebSocket connection, the symbols it wants (None = all), and whether only tradeable signals."""

    connection_id: str
    symbols: frozenset[str] | None
    connected_at: str
    tradeable_only: bool = False

    def wants(self, symbol: str) -> bool:
        return self.symbols is None or symbol in self.symbols

    def wants_signal(self, signal: Signal) -> bool:
        """Its symbol is followed, and it is tradeable unless the connection takes paper signals too."""
        return self.wants(signal.symbol) and (not self.tradeable_only or signal.is_tradeable)


class _ConnectionItem(Model):
    connection_id = UnicodeAttribute(hash_key=True)
    symbols = ListAttribute(of=UnicodeAttribute, null=True)
    tradeable_only = BooleanAttribute(null=True)
    connected_at = UnicodeAttribute()
    ttl = TTLAttribute()


class ConnectionStore:
    """Register, re-filter, list and forget WebSocket connections."""

    def __init__(self, table_name: str, *, region: str | None = None, host: str | None = None) -> None:
        self.table_name = table_name
        self._model = table_model(_ConnectionItem, table_name, region, host, max_pool_connections=32)

    def add(self, connection_id: str, symbols: Iterable[str] | None, now: datetime, *,
            tradeable_only: bool = False) -> Connection:
        """Store a new connection with its filter and a TTL."""
        item = self._model(connection_id, symbols=_listed(symbols), connected_at=iso_utc(now),
                           ttl=now + CONNECTION_TTL, tradeable_only=tradeable_only or None)
        item.save()
        return _to_connection(item)

    def set_symbols(self, connection_id: str, symbols: Iterable[str] | None, now: datetime, *,
                    tradeable_only: bool | None = None) -> Connection:
        """Replace the filter (`tradeable_only` None: unchanged); a row that vanished (TTL, a lost race) is
        re-created rather than lost."""
        listed = _listed(symbols)
        model = self._model
        # pynamodb's stubs type a ListAttribute's value as its attribute class, not as the values it holds
        actions = [model.symbols.set(listed) if listed is not None else model.symbols.remove()]  # type: ignore[arg-type]
        if tradeable_only is not None:
            actions.append(model.tradeable_only.set(True) if tradeable_only else model.tradeable_only.remove())
        item = model(connection_id)
        try:
            item.update(actions=actions, condition=model.connection_id.exists())  # type: ignore[arg-type]
        except UpdateError as exc:
            if exc.cause_response_code != "ConditionalCheckFailedException":
                raise
            return self.add(connection_id, symbols, now, tradeable_only=bool(tradeable_only))
        return _to_connection(item)

    def get(self, connection_id: str) -> Connection | None:
        try:
            return _to_connection(self._model.get(connection_id))
        except self._model.DoesNotExist:
            return None

    def remove(self, connection_id: str) -> None:
        """Forget one connection (idempotent)."""
        self._model(connection_id).delete()

    def remove_many(self, connection_ids: Iterable[str]) -> None:
        """Forget these connections (DeleteItem each: gone ones are few, and that is all IAM allows)."""
        for connection_id in connection_ids:
            self.remove(connection_id)

    def all(self) -> list[Connection]:
        """Every open connection. A Scan, on purpose: a broadcast goes to (nearly) all of them anyway."""
        return [_to_connection(item) for item in self._model.scan()]


def _listed(symbols: Iterable[str] | None) -> list[str] | None:
    return None if symbols is None else sorted(set(symbols))


def _to_connection(item: Any) -> Connection:
    symbols = None if item.symbols is None else frozenset(item.symbols)
    return Connection(item.connection_id, symbols, item.connected_at, bool(item.tradeable_only))
