"""The Connections table (DynamoDB, via pynamodb): one row per open WebSocket connection.

`symbols` is the connection's filter: absent (None) means every symbol, a list means only those
(an empty list, after unsubscribing from everything, means none). `ttl` removes rows whose
`$disconnect` never arrived: API Gateway closes every WebSocket connection after two hours anyway.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Any

from pynamodb.attributes import ListAttribute, TTLAttribute, UnicodeAttribute
from pynamodb.exceptions import UpdateError
from pynamodb.models import Model

from traderai.contracts import iso_utc

CONNECTION_TTL = timedelta(hours=2, minutes=10)  # API Gateway's 2 h connection limit, plus slack


@dataclass(frozen=True, slots=True)
class Connection:
    """An open WebSocket connection and the symbols it wants (None = all)."""

    connection_id: str
    symbols: frozenset[str] | None
    connected_at: str

    def wants(self, symbol: str) -> bool:
        return self.symbols is None or symbol in self.symbols


class _ConnectionItem(Model):
    connection_id = UnicodeAttribute(hash_key=True)
    symbols = ListAttribute(of=UnicodeAttribute, null=True)
    connected_at = UnicodeAttribute()
    ttl = TTLAttribute()


@lru_cache(maxsize=16)
def _model_for(table_name: str, region: str | None, host: str | None) -> type[_ConnectionItem]:
    meta = type("Meta", (), {"table_name": table_name, "region": region, "host": host,
                             "max_pool_connections": 32})
    return type("ConnectionItem", (_ConnectionItem,), {"__module__": __name__, "Meta": meta})


def _region_default() -> str | None:
    from botocore.session import get_session  # already imported by pynamodb: no cost

    return get_session().get_config_variable("region")


class ConnectionStore:
    """Register, re-filter, list and forget WebSocket connections."""

    def __init__(self, table_name: str, *, region: str | None = None, host: str | None = None) -> None:
        self.table_name = table_name
        self._model = _model_for(table_name, region or _region_default(), host)

    def add(self, connection_id: str, symbols: Iterable[str] | None, now: datetime) -> Connection:
        """Store a new connection with its filter and a TTL."""
        item = self._model(connection_id, symbols=_listed(symbols), connected_at=iso_utc(now),
                           ttl=now + CONNECTION_TTL)
        item.save()
        return _to_connection(item)

    def set_symbols(self, connection_id: str, symbols: Iterable[str] | None, now: datetime) -> Connection:
        """Replace the filter; a row that vanished (TTL, a lost race) is re-created rather than lost."""
        listed = _listed(symbols)
        model = self._model
        action = model.symbols.set(listed) if listed is not None else model.symbols.remove()
        item = model(connection_id)
        try:
            item.update(actions=[action], condition=model.connection_id.exists())
        except UpdateError as exc:
            if exc.cause_response_code != "ConditionalCheckFailedException":
                raise
            return self.add(connection_id, symbols, now)
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
    return Connection(item.connection_id, symbols, item.connected_at)
