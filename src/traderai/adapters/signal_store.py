"""The Signals table (DynamoDB, via pynamodb): store, fetch and page through signals.

The pynamodb model lives only here. Its class is built on first use for a given table name, so
nothing reads the environment at import time. Every item carries `feed = "ALL"`, the constant hash
key of the `by_time` index, which gives "every signal, newest first" as a Query, never a Scan.
Numbers come back as Python floats (ints for `leverage`), never strings or Decimals.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields
from datetime import datetime
from functools import lru_cache
from typing import TYPE_CHECKING, Any, get_args, get_origin, get_type_hints

from pynamodb.attributes import (
    Attribute,
    BooleanAttribute,
    ListAttribute,
    NumberAttribute,
    UnicodeAttribute,
    VersionAttribute,
)
from pynamodb.constants import MAP
from pynamodb.exceptions import PutError, UpdateError
from pynamodb.expressions.condition import Condition
from pynamodb.indexes import AllProjection, GlobalSecondaryIndex
from pynamodb.models import Model

from traderai.adapters.dynamo import table_model
from traderai.contracts import OPEN_STATUSES, Signal, SignalStatus, iso_utc

FEED_ALL = "ALL"
BY_SYMBOL, BY_STATUS, BY_TIME = "by_symbol", "by_status", "by_time"
# Key attributes of a LastEvaluatedKey per index: the index's own keys plus the table's hash key.
INDEX_KEYS: dict[str, tuple[str, ...]] = {
    BY_SYMBOL: ("signal_id", "symbol", "created_at"),
    BY_STATUS: ("signal_id", "status", "created_at"),
    BY_TIME: ("signal_id", "feed", "created_at"),
}
_INT_FIELDS = frozenset({"leverage"})
FINAL_SIGNAL_STATUSES = (SignalStatus.TP3_HIT, SignalStatus.STOPPED, SignalStatus.EXPIRED)




@dataclass(frozen=True, slots=True)
class VersionedSignal:
    """A signal and the item version it was read at (the condition of the tracker's update)."""

    signal: Signal
    version: int | None


@dataclass(frozen=True, slots=True)
class SignalOutcome:
    """What the track record reads of a signal (GET /performance): its identity, risk, costs and outcome.

    Read with a projection and decoded straight from the raw items: a report over 10,000 signals reads and
    decodes these 17 attributes, not the ~45 of a whole Signal through the model.
    """

    signal_id: str
    symbol: str
    side: str
    status: str
    created_at: str
    entry_price: float
    sl_price: float
    costs_pct: float
    tp1_hit_at: str | None = None
    tp2_hit_at: str | None = None
    tp3_hit_at: str | None = None
    closed_at: str | None = None
    closed_reason: str | None = None
    realised_net_pct: float | None = None
    time_in_trade_seconds: float | None = None
    updated_at: str | None = None
    tradeable: bool | None = None

    @property
    def is_tradeable(self) -> bool:
        """As `Signal.is_tradeable`: tradeable unless marked paper."""
        return self.tradeable is not False


OUTCOME_FIELDS = tuple(f.name for f in fields(SignalOutcome))


def _plain(value: Mapping[str, Any]) -> Any:
    """A raw DynamoDB attribute value of the outcome fields as Python: S, N (float), BOOL, NULL."""
    if "S" in value:
        return value["S"]
    if "N" in value:
        return float(value["N"])
    if "BOOL" in value:
        return bool(value["BOOL"])
    return None


class InvalidStartKey(ValueError):
    """A pagination start key does not have the shape of the index it is used with."""


@dataclass(frozen=True, slots=True)
class SignalFilters:
    """Normalised filters of a signal listing; `since`/`until` are inclusive ISO-8601 UTC bounds."""

    symbol: str | None = None
    side: str | None = None
    status: str | None = None
    since: str | None = None
    until: str | None = None
    tradeable: bool | None = None  # True: tradeable (and items stored before the field); False: paper only

    @property
    def empty_window(self) -> bool:
        """True when no stored second lies in [since, until] (e.g. both were inside one second)."""
        return bool(self.since and self.until and self.since > self.until)

    @property
    def index_name(self) -> str:
        """The index whose hash key is the most specific filter given: symbol, then status, then none."""
        if self.symbol:
            return BY_SYMBOL
        if self.status:
            return BY_STATUS
        return BY_TIME


class _FloatAttribute(NumberAttribute):
    """A DynamoDB number read back as float: DynamoDB normalises 50000.0 to "50000", json gives an int."""

    def deserialize(self, value: str) -> float:
        return float(value)


class _IntAttribute(NumberAttribute):
    def deserialize(self, value: str) -> int:
        return int(value)


class _FloatMapAttribute(Attribute[dict[str, float]]):
    """A map of name -> number (`outcome_probabilities`), read back as a plain dict of floats."""

    attr_type = MAP

    def serialize(self, value: Mapping[str, float]) -> dict[str, dict[str, str]]:
        return {str(k): {"N": NumberAttribute().serialize(float(v))} for k, v in value.items()}

    def deserialize(self, value: Mapping[str, Mapping[str, str]]) -> dict[str, float]:
        return {k: float(v["N"]) for k, v in value.items()}


class _ByIndexMeta:
    projection = AllProjection()


class _SignalItem(Model):
    """Attributes of a Signals-table item: the Signal contract plus the constant `feed`."""

    signal_id = UnicodeAttribute(hash_key=True)
    feed = UnicodeAttribute(default=FEED_ALL)
    # Incremented on every write; the tracker's updates are conditional on the version it read.
    version = VersionAttribute()
    if TYPE_CHECKING:  # one attribute per Signal field, added per table by _signal_attributes(); the ones queried
        symbol: UnicodeAttribute
        side: UnicodeAttribute
        status: UnicodeAttribute
        created_at: UnicodeAttribute
        expires_at: UnicodeAttribute
        tradeable: BooleanAttribute


def _attribute_for(name: str, hint: Any) -> Attribute[Any]:
    """The pynamodb attribute of a Signal field; `X | None` fields (lifecycle, `tp_weights`) may be absent."""
    kinds = set(get_args(hint)) or {hint}
    optional = type(None) in kinds
    for kind in kinds:
        if get_origin(kind) is tuple:  # tp_weights: numbers, read back as floats; paper_reasons: strings
            element = get_args(kind)[0]
            return ListAttribute(of=UnicodeAttribute if element is str else _FloatAttribute, null=optional)
        if get_origin(kind) is dict:  # outcome_probabilities
            return _FloatMapAttribute(null=optional)
    if bool in kinds:
        return BooleanAttribute(null=optional)
    if name in _INT_FIELDS or int in kinds:
        return _IntAttribute(null=optional)
    if float in kinds:
        return _FloatAttribute(null=optional)
    return UnicodeAttribute(null=optional)


def _model_for(table_name: str, region: str | None, host: str | None) -> type[_SignalItem]:
    """The pynamodb model class bound to `table_name` (built once per table)."""
    return table_model(_SignalItem, table_name, region, host, attributes=_signal_attributes)


def _signal_attributes() -> dict[str, Any]:
    """The three indexes and one typed attribute per `Signal` field."""

    def index(name: str, hash_name: str) -> GlobalSecondaryIndex:
        attrs = {
            "Meta": type("Meta", (_ByIndexMeta,), {"index_name": name}),
            hash_name: UnicodeAttribute(hash_key=True),
            "created_at": UnicodeAttribute(range_key=True),
        }
        return type(f"Index_{name}", (GlobalSecondaryIndex,), attrs)()

    namespace: dict[str, Any] = {
        BY_SYMBOL: index(BY_SYMBOL, "symbol"),
        BY_STATUS: index(BY_STATUS, "status"),
        BY_TIME: index(BY_TIME, "feed"),
    }
    for name, hint in get_type_hints(Signal).items():
        if name != "signal_id":
            namespace[name] = _attribute_for(name, hint)
    return namespace


@lru_cache(maxsize=1)
def _image_model() -> type[_SignalItem]:
    """A model used only to decode raw items (stream images); it never talks to a table."""
    return _model_for("__decode_only__", None, None)


def signal_from_item(raw: Mapping[str, Any]) -> Signal:
    """Decode a raw DynamoDB item ({"name": {"S": ...}}), e.g. a stream NewImage, into a Signal."""
    item = _image_model().from_raw_data(dict(raw))
    return _to_signal(item)


def _to_signal(item: _SignalItem) -> Signal:
    return Signal(**{name: getattr(item, name) for name in Signal.field_names()})


class SignalStore:
    """Store and read signals in the Signals table; reads use Query on an index, never Scan."""

    def __init__(self, table_name: str, *, region: str | None = None, host: str | None = None) -> None:
        self.table_name = table_name
        self._model = _model_for(table_name, region, host)

    def put_new(self, signal: Signal) -> bool:
        """Write the signal unless its id exists: True if written, False if it was already there (a retry)."""
        item = self._model(**signal.to_dict())
        item.feed = FEED_ALL
        try:
            item.save(condition=self._model.signal_id.does_not_exist())
        except PutError as exc:
            if exc.cause_response_code == "ConditionalCheckFailedException":
                return False
            raise
        return True

    def get(self, signal_id: str) -> Signal | None:
        """The signal with this id, or None."""
        try:
            return _to_signal(self._model.get(signal_id))
        except self._model.DoesNotExist:
            return None

    def active_signal_ids(self, symbols: Iterable[str], now: datetime | None = None
                          ) -> dict[tuple[str, str], frozenset[str]]:
        """(symbol, side) -> ids of open signals (ACTIVE, TP1_HIT, TP2_HIT) of these symbols, unexpired at `now`.

        A signal that hit TP1 is still a position in play, so it blocks a second one like an ACTIVE one does.
        One paginated Query per open status on `by_status`: the open set is small, whatever the history.
        """
        wanted = frozenset(symbols)
        if not wanted:
            return {}
        index = getattr(self._model, BY_STATUS)
        condition: Condition | None = None
        if len(wanted) <= 100:  # DynamoDB's IN takes at most 100 operands; more are filtered here
            condition = self._model.symbol.is_in(*sorted(wanted))
        if now is not None:
            expiry = self._model.expires_at > iso_utc(now)
            condition = expiry if condition is None else condition & expiry
        found: dict[tuple[str, str], set[str]] = {}
        items = (item for status in OPEN_STATUSES for item in index.query(status.value, filter_condition=condition))
        for item in items:
            if item.symbol in wanted:
                found.setdefault((item.symbol, item.side), set()).add(item.signal_id)
        return {pair: frozenset(ids) for pair, ids in found.items()}

    def active_pairs(self, symbols: Iterable[str], *, now: datetime | None = None
                     ) -> frozenset[tuple[str, str]]:
        """(symbol, side) pairs that have an ACTIVE signal (unexpired at `now` when given)."""
        return frozenset(self.active_signal_ids(symbols, now))

    def query_page(self, filters: SignalFilters, limit: int, start_key: Mapping[str, str] | None = None
                   ) -> tuple[list[Signal], dict[str, str] | None]:
        """One page of signals matching `filters`, newest first, and the key to resume after it (or None).

        Guarantee: exactly one Query on the index named by `filters.index_name`, reading at most
        `limit + 1` items. The hash key and the `since`/`until` range on `created_at` are key
        conditions; `side`, `tradeable` (and `status` on `by_symbol`) are filter expressions, so a page may hold
        fewer than `limit` items while a next key still exists. Reading one item more than `limit`
        tells whether anything follows, so the last page never hands out a key to an empty page.
        """
        if not 1 <= limit <= 1000:
            raise ValueError(f"limit: {limit} is outside 1..1000")
        if filters.empty_window:  # DynamoDB refuses BETWEEN with low > high (ValidationException)
            return [], None
        index_name = filters.index_name
        hash_value = {BY_SYMBOL: filters.symbol, BY_STATUS: filters.status, BY_TIME: FEED_ALL}[index_name]
        results = getattr(self._model, index_name).query(
            hash_value,
            range_key_condition=self._created_at_condition(filters),
            filter_condition=self._filter_condition(filters, index_name),
            scan_index_forward=False,
            page_size=limit + 1,
            last_evaluated_key=_raw_key(index_name, start_key) if start_key is not None else None,
        )
        page = next(results.page_iter)
        items = [self._model.from_raw_data(raw) for raw in page.get("Items", [])]
        if len(items) > limit:
            items = items[:limit]
            return [_to_signal(i) for i in items], _key_of(index_name, items[-1])
        last = page.get("LastEvaluatedKey")
        return [_to_signal(i) for i in items], _plain_key(index_name, last) if last else None

    # ---------------------------------------------------------------- lifecycle (tracker, performance)

    def open_signals(self) -> list[VersionedSignal]:
        """Signals still in play (ACTIVE, TP1_HIT, TP2_HIT), each with the version it was read at.

        One paginated Query per open status on `by_status`: the open set stays small whatever the history.
        """
        index = getattr(self._model, BY_STATUS)
        return [VersionedSignal(_to_signal(item), item.version)
                for status in OPEN_STATUSES for item in index.query(status.value)]

    def record_progress(self, signal_id: str, read_version: int | None, changes: Mapping[str, Any]) -> bool:
        """Write the tracker's changes if the item is still at `read_version` (and bump the version).

        True if written; False if another run changed the item first (a conditional-check failure: the
        caller backs off, it is not an error). `None` values are not written.
        """
        item = self._model(signal_id)
        item.version = read_version
        actions = [getattr(self._model, name).set(value) for name, value in changes.items() if value is not None]
        try:
            item.update(actions=actions, condition=self._model.signal_id.exists())
        except UpdateError as exc:
            if exc.cause_response_code == "ConditionalCheckFailedException":
                return False
            raise
        return True

    def closed_signals_of_all(self, created_since: str) -> list[Signal]:
        """Every market's final signals created at or after `created_since`, newest first (GET /performance's
        locks): one paginated Query on `by_time`, the final statuses as a filter, never a Scan."""
        final = self._model.status.is_in(*(s.value for s in FINAL_SIGNAL_STATUSES))
        results = getattr(self._model, BY_TIME).query(
            FEED_ALL, range_key_condition=self._model.created_at >= created_since, filter_condition=final,
            scan_index_forward=False)
        return [_to_signal(item) for item in results]

    def closed_signals(self, symbol: str, created_since: str) -> list[Signal]:
        """The market's final signals (TP3_HIT, STOPPED, EXPIRED) created at or after `created_since`, oldest first.

        What the protections read (core/protections.py): one paginated Query on `by_symbol` with the
        creation bound as the key condition and the final statuses as a filter, never a Scan. Reads are
        bounded by the market's signals since `created_since` (the guards' history plus one signal life).
        """
        final = self._model.status.is_in(*(s.value for s in FINAL_SIGNAL_STATUSES))
        results = getattr(self._model, BY_SYMBOL).query(
            symbol, range_key_condition=self._model.created_at >= created_since, filter_condition=final)
        return [_to_signal(item) for item in results]

    def created_between(self, since: str | None, until: str | None, *, limit: int | None = None) -> list[Signal]:
        """Signals created in [since, until] (inclusive ISO-8601 UTC bounds), newest first, at most `limit`.

        A paginated Query on `by_time` with the range as the key condition: never a Scan.
        """
        window = SignalFilters(since=since, until=until)
        if window.empty_window:  # DynamoDB refuses BETWEEN with low > high (ValidationException)
            return []
        condition = self._created_at_condition(window)
        results = getattr(self._model, BY_TIME).query(FEED_ALL, range_key_condition=condition,
                                                      scan_index_forward=False, limit=limit)
        return [_to_signal(item) for item in results]

    def outcomes_between(self, since: str | None, until: str | None, *, limit: int | None = None
                         ) -> list[SignalOutcome]:
        """`created_between`'s signals as `SignalOutcome`s: the same paginated Query on `by_time` (never a Scan),
        with a projection of the outcome fields, decoded without the model."""
        window = SignalFilters(since=since, until=until)
        if window.empty_window:
            return []
        connection = self._model._get_connection()
        condition = self._created_at_condition(window)
        found: list[SignalOutcome] = []
        start: dict[str, Any] | None = None
        while limit is None or len(found) < limit:
            page = connection.query(FEED_ALL, range_key_condition=condition, index_name=BY_TIME,
                                    scan_index_forward=False, attributes_to_get=list(OUTCOME_FIELDS),
                                    exclusive_start_key=start, limit=None if limit is None else limit - len(found))
            found.extend(SignalOutcome(**{name: _plain(value) for name, value in raw.items() if name in OUTCOME_FIELDS})
                         for raw in page.get("Items", []))
            start = page.get("LastEvaluatedKey")
            if not start:
                break
        return found if limit is None else found[:limit]

    def _created_at_condition(self, filters: SignalFilters) -> Any:
        created_at = self._model.created_at
        if filters.since and filters.until:
            return created_at.between(filters.since, filters.until)
        if filters.since:
            return created_at >= filters.since
        if filters.until:
            return created_at <= filters.until
        return None

    def _filter_condition(self, filters: SignalFilters, index_name: str) -> Any:
        conditions = []
        if filters.side:
            conditions.append(self._model.side == filters.side)
        if filters.status and index_name != BY_STATUS:
            conditions.append(self._model.status == filters.status)
        if filters.tradeable is True:  # an item stored before the field was published tradeable
            conditions.append(self._model.tradeable.does_not_exist() | (self._model.tradeable == True))  # noqa: E712
        elif filters.tradeable is False:
            conditions.append(self._model.tradeable == False)  # noqa: E712
        if not conditions:
            return None
        combined = conditions[0]
        for condition in conditions[1:]:
            combined &= condition
        return combined


def _key_of(index_name: str, item: _SignalItem) -> dict[str, str]:
    return {name: getattr(item, name) for name in INDEX_KEYS[index_name]}


def _plain_key(index_name: str, raw: Mapping[str, Mapping[str, str]]) -> dict[str, str]:
    return {name: raw[name]["S"] for name in INDEX_KEYS[index_name]}


def _raw_key(index_name: str, key: Mapping[str, str]) -> dict[str, dict[str, str]]:
    expected = INDEX_KEYS[index_name]
    if set(key) != set(expected) or not all(isinstance(key[n], str) and key[n] for n in expected):
        raise InvalidStartKey(f"start key must have exactly the string attributes {', '.join(expected)}")
    return {name: {"S": key[name]} for name in expected}
